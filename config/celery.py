"""The Celery application. Configuration comes from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def install_phi_filter(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery sets up handlers of its own (its task logger, the root logger when no handler was there):
    each gets the same PHI filter as Django's (config/settings.py LOGGING), and its formatter."""
    from django.conf import settings

    from config.log_format import JsonFormatter
    from imports.phi_logging import PhiRedactingFilter

    for handler in logger.handlers:
        if not any(isinstance(f, PhiRedactingFilter) for f in handler.filters):
            handler.addFilter(PhiRedactingFilter())
        # DJANGO_LOG_FORMAT=json: Celery's own handlers write the same JSON lines as Django's.
        if settings.LOG_FORMAT == "json":
            handler.setFormatter(JsonFormatter())
