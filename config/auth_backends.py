"""django-axes' backend, telling the audit trail which sign-ins it refused."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from django.http import HttpRequest

# Set on a request whose sign-in the lockout refused before any password was checked.
REFUSED_BY_LOCKOUT = "sign_in_refused_by_lockout"


class LockoutBackend(AxesStandaloneBackend):  # type: ignore[misc]
    """Marks the requests it refuses. axes' own `axes_locked_out` flag is also set by the failure that
    starts a lockout, which was a real wrong password and is audited as one."""

    def authenticate(
        self, request: HttpRequest | None, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return super().authenticate(request, *args, **kwargs)
        except AxesBackendPermissionDenied:
            setattr(request, REFUSED_BY_LOCKOUT, True)
            raise
