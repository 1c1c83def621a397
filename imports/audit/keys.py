"""The audit key: settings.AUDIT_KEY (DJANGO_AUDIT_KEY), read when it is used so tests can override it."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def audit_key() -> bytes:
    key = str(getattr(settings, "AUDIT_KEY", ""))
    if not key:
        # config/settings.py refuses to start without one; this catches settings made some other way.
        raise ImproperlyConfigured("settings.AUDIT_KEY is empty: set DJANGO_AUDIT_KEY.")
    return key.encode()
