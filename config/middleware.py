from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django_htmx.http import HttpResponseClientRedirect

from imports.audit import request_origin


class AuditOriginMiddleware:
    """Make the request's IP address and user agent available to every audit event it records.

    See imports.audit.request_origin for why this is a context variable and not an argument.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_origin(request):
            return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """Send the Content-Security-Policy header (Django 5.2 has no built-in CSP support)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(
            "Content-Security-Policy", settings.CONTENT_SECURITY_POLICY
        )
        return response


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's login-required middleware, made htmx-aware.

    A 302 answered to an htmx request would be followed by the browser and the login page swapped
    into a fragment; HX-Redirect makes htmx load the login page as a whole page instead.
    """

    def handle_no_permission(
        self, request: HttpRequest, view_func: Callable[..., HttpResponseBase]
    ) -> HttpResponseRedirect:
        if getattr(request, "htmx", False):
            current_url = (
                request.headers.get("HX-Current-URL") or request.get_full_path()
            )
            login = redirect_to_login(
                current_url,
                self.get_login_url(view_func),
                self.get_redirect_field_name(view_func),
            )
            # A 200 with HX-Redirect, which the stubs do not count as a redirect response.
            return HttpResponseClientRedirect(login["Location"])  # type: ignore[return-value]
        return super().handle_no_permission(request, view_func)
