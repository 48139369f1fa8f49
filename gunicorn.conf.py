"""gunicorn settings for the bot host: ``gunicorn wsgi:app`` reads this file.

Each can be overridden on the command line or through the environment
variable named beside it. ``benchmarks/README.md`` has the measurements
behind the defaults.
"""
import os

wsgi_app = "wsgi:app"
bind = os.environ.get("WECHATBOT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WECHATBOT_WORKERS", "2"))
# Threads, not sync workers: a request whose plugins may block waits up to
# reply_deadline for them without holding up the worker's other callbacks.
# Each thread a worker runs costs CPU on every request (more GIL hand-overs);
# 8 per worker keeps that low while 16 callbacks at once can wait on slow
# plugins. Raise it if yours are slow and busy.
worker_class = "gthread"
threads = int(os.environ.get("WECHATBOT_THREADS", "8"))
timeout = 30
graceful_timeout = 10
# Behind a reverse proxy on the same machine: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# No access log unless asked for ("-" for standard output, or a file): the
# reverse proxy in front usually keeps one, and a line per request costs
# about an eighth of a callback's CPU time.
accesslog = os.environ.get("WECHATBOT_ACCESS_LOG") or None
loglevel = os.environ.get("WECHATBOT_LOG_LEVEL", "info").lower()


def post_worker_init(worker):
    """Leave the objects made at start-up (Flask, plugins, config) out of GC passes.

    They live as long as the worker; without this every full collection walks
    them all again, which costs more per request than the request's own work.
    """
    import gc

    gc.freeze()
