"""The WSGI entry point: ``gunicorn wsgi:app`` (config from ``$WECHATBOT_CONFIG``)."""
from wechatbot import create_app

app = create_app()
