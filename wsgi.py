"""The WSGI entry point: ``gunicorn wsgi:app`` (config from ``$WECHATBOT_CONFIG``, else ``./config.ini``).

A configuration or plugin error stops gunicorn with one line naming the key or plugin.
"""
from wechatbot.startup import create_app_or_exit

app = create_app_or_exit()
