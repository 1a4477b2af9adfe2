"""WSGI entry point for gunicorn: ``gunicorn api.wsgi:app``."""

from api import create_app
from shared.config import get_settings
from shared.observe.logs import configure_logging

configure_logging(get_settings())
app = create_app()
