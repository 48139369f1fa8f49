"""gunicorn settings for the bot host: ``gunicorn wsgi:app`` reads this file.

Each can be overridden on the command line or through the environment
variable named beside it.
"""
import os

wsgi_app = "wsgi:app"
bind = os.environ.get("WECHATBOT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WECHATBOT_WORKERS", "2"))
# A request thread waits up to reply_deadline for the plugins: have plenty of them.
worker_class = "gthread"
threads = int(os.environ.get("WECHATBOT_THREADS", "32"))
timeout = 30
graceful_timeout = 10
# Behind a reverse proxy on the same machine: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = os.environ.get("WECHATBOT_ACCESS_LOG", "-")
loglevel = os.environ.get("WECHATBOT_LOG_LEVEL", "info").lower()


def post_fork(server, worker):
    """Hand the GIL between threads sooner than CPython's 5 ms default.

    A request thread that waited on I/O (SQLite, a socket) then gets back to
    work without queueing behind a busy thread for a whole switch interval.
    """
    import sys

    sys.setswitchinterval(0.0005)


def post_worker_init(worker):
    """Leave the objects made at start-up (Flask, plugins, config) out of GC passes.

    They live as long as the worker; without this every full collection walks
    them all again, which costs more per request than the request's own work.
    """
    import gc

    gc.freeze()
