"""gunicorn settings for the bot host: ``gunicorn wsgi:app`` reads this file.

Each can be overridden on the command line or through the environment
variable named beside it. ``benchmarks/README.md`` has the measurements
behind the defaults.
"""
import os
import shutil
import tempfile

wsgi_app = "wsgi:app"
bind = os.environ.get("WECHATBOT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WECHATBOT_WORKERS", "2"))
# Threads, not sync workers: a request whose plugins may block waits up to
# reply_deadline for them without holding up the worker's other callbacks.
# Each thread a worker runs costs CPU on every request (more GIL hand-overs):
# side by side, 8 per worker were no faster than 4 (benchmarks/README.md),
# while with 4, 8 callbacks at once (2 workers) can still wait on slow
# plugins; beyond that their replies are pushed. Raise it if yours are slow
# and busy.
# gthread's, except that a thread only gets a request once it has arrived
# whole (a slow client holds a socket, not a thread; one that takes over
# $WECHATBOT_REQUEST_TIMEOUT, 5 s, is answered 408), and reply_deadline
# counts from the request's arrival; a kept-alive connection is closed after
# $WECHATBOT_KEEPALIVE_REQUESTS (100), so that no worker keeps them all: see
# wechatbot/serving.py.
worker_class = "wechatbot.serving.BufferingWorker"
threads = int(os.environ.get("WECHATBOT_THREADS", "4"))
timeout = 30
graceful_timeout = 10
# Behind a reverse proxy on the same machine: trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# No access log unless asked for ("-" for standard output, or a file): the
# reverse proxy in front usually keeps one, and a line per request costs
# about an eighth of a callback's CPU time.
accesslog = os.environ.get("WECHATBOT_ACCESS_LOG") or None
# gunicorn's usual line, then the callback's id (the X-Request-Id the host answers).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
# The level of gunicorn's error log, and of wechatbot's and the plugins' lines in it.
loglevel = os.environ.get("WECHATBOT_LOG_LEVEL", "info").lower()

# /metrics adds up every worker's counts, kept in files in this directory
# (prometheus_client's multiprocess mode). Set PROMETHEUS_MULTIPROC_DIR to
# choose it; by default each master gets a fresh one, removed when it exits.
_DEFAULT_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"wechatbot-metrics-{os.getpid()}")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _DEFAULT_METRICS_DIR)


def on_starting(server):
    """Empty the metrics directory: counts from an earlier run must not be added in."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges; its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """Log wechatbot's and the plugins' lines to gunicorn's error log, in the configured format."""
    from wechatbot.logs import setup_gunicorn_worker

    setup_gunicorn_worker(worker)


def post_worker_init(worker):
    """Leave the objects made at start-up (Flask, plugins, config) out of GC passes.

    They live as long as the worker; without this every full collection walks
    them all again, which costs more per request than the request's own work.
    """
    import gc

    gc.freeze()


def on_exit(server):
    """Remove the metrics directory if it is this master's own default one, and the marks its
    workers left: a start-up failure they reported (they print it once between them), and
    the SQLite store they opened (a worker started later never creates it)."""
    from wechatbot.startup import forget_reported_failure

    if os.environ["PROMETHEUS_MULTIPROC_DIR"] == _DEFAULT_METRICS_DIR:
        shutil.rmtree(_DEFAULT_METRICS_DIR, ignore_errors=True)
    forget_reported_failure()
