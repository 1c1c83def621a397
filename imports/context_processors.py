from __future__ import annotations

from django.http import HttpRequest

from config.admin_site import can_administer


def navigation(request: HttpRequest) -> dict[str, object]:
    """What the navigation bar needs on every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_can_administer": can_administer(user)}
