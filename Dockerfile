# The bot host: gunicorn serving wechatbot with the built-in plugins.
#
#   podman build -t wechatbot .          (or docker build)
#   podman run -p 8000:8000 -v ./config.ini:/etc/wechatbot/config.ini:ro \
#       -e WECHATBOT_WECOM__SECRET=... wechatbot
#
# The config comes from the file mounted at $WECHATBOT_CONFIG plus the
# environment (WECHATBOT_<SECTION>__<KEY>, see config.example.ini). Relative
# paths in it (the default SQLite store var/wechatbot.db) are under
# /var/lib/wechatbot; mount a volume there to keep them.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# wechatbot, the built-in plugins and every dependency in a venv; only the venv goes on.
FROM python AS build
COPY . /src
RUN python3 -m venv /opt/wechatbot \
 && /opt/wechatbot/bin/pip install --no-cache-dir /src /src/plugins/echo /src/plugins/keyword /src/plugins/media

FROM python
RUN useradd --create-home --shell /usr/sbin/nologin wechatbot \
 && mkdir -p /etc/wechatbot /var/lib/wechatbot/var \
 && chown -R wechatbot:wechatbot /var/lib/wechatbot
COPY --from=build /opt/wechatbot /opt/wechatbot
COPY gunicorn.conf.py wsgi.py /opt/wechatbot/app/
ENV PATH=/opt/wechatbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WECHATBOT_CONFIG=/etc/wechatbot/config.ini \
    WECHATBOT_BIND=0.0.0.0:8000
WORKDIR /var/lib/wechatbot
USER wechatbot
EXPOSE 8000
ENTRYPOINT ["gunicorn", "--config", "/opt/wechatbot/app/gunicorn.conf.py", "--pythonpath", "/opt/wechatbot/app"]
