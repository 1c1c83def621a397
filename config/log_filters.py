"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class RefusalsAreNotErrors(logging.Filter):
    """Drop django.request's "Forbidden (Permission denied)" record and its traceback.

    A refusal is the app working as intended; imports.views.errors.permission_denied logs it as one
    line (user, path, permission). Other 403s (a CSRF failure) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        return not isinstance(exception, PermissionDenied)
