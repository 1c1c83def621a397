"""The refusal and error pages: the site's layout, what was refused or not found, and a way back."""

from __future__ import annotations

import logging

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger("imports.access")


def _permission_of(exception: Exception) -> str:
    """The "app_label.codename" a refusal names (imports.views.common.permission_required), or ""."""
    if isinstance(exception, PermissionDenied) and exception.args:
        permission = str(exception.args[0])
        if "." in permission and " " not in permission:
            return permission
    return ""


def _roles_with(permission: str) -> list[str]:
    if not permission:
        return []
    app_label, codename = permission.split(".", 1)
    return list(
        Group.objects.filter(
            permissions__content_type__app_label=app_label,
            permissions__codename=codename,
        )
        .order_by("name")
        .values_list("name", flat=True)
    )


def _render(
    request: HttpRequest, template: str, context: dict[str, object], status: int
) -> HttpResponse:
    # An htmx request that is refused gets a fragment that says so in place of what it asked for
    # (htmx swaps 403 and 404 answers, see htmx-config in base.html); innerHTML keeps the target.
    if getattr(request, "htmx", False):
        response = render(request, f"{template}#message", context, status=status)
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, template, context, status=status)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403: one log line, no traceback (a refusal is not an error), and a page that says why."""
    permission = _permission_of(exception)
    user = request.user.get_username() if request.user.is_authenticated else "-"
    logger.info(
        "Refused %s %s to user %s (needs %s)",
        request.method,
        request.path,
        user,
        permission or "a permission",
    )
    roles = _roles_with(permission)
    user_roles = (
        list(request.user.groups.values_list("name", flat=True))
        if request.user.is_authenticated
        else []
    )
    return _render(
        request,
        "403.html",
        {"needed_roles": roles, "user_roles": user_roles},
        403,
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404 (with DEBUG on, Django shows its technical page instead)."""
    return _render(
        request,
        "404.html",
        {"missing_path": request.path, "reason": _reason(exception)},
        404,
    )


def _reason(exception: Exception) -> str:
    # get_object_or_404 says "No Scan matches the given query."; anything with a URL resolver
    # detail is not for users.
    if isinstance(exception, Http404) and exception.args:
        message = exception.args[0]
        if (
            isinstance(message, str)
            and message.startswith("No ")
            and "matches" in message
        ):
            return message
    return ""
