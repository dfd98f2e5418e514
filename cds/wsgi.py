"""WSGI entry point for gunicorn and ``runserver``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from cds.core.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
# Before the application loads its middleware: the Django instrumentation adds its own (TRACING_ENABLED).
tracing_setup(service="web", django=True)
application = get_wsgi_application()
