from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.views import redirect_to_login
from django.core.signals import request_finished
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.utils.cache import add_never_cache_headers
from django_htmx.http import HttpResponseClientRedirect

from config.log_format import REQUEST_ID_HEADER, request_id, request_id_from
from imports.audit.records import request_origin


def _forget_request_id(**kwargs: Any) -> None:
    request_id.set(None)


class RequestIdMiddleware:
    """Give every request an id, log it with every line (config/log_format.py) and send it back as X-Request-ID.

    A proxy's or a client's X-Request-ID is kept when it is a sane token (at most 64 of A-Z a-z 0-9 . _ -), so one
    id follows the request through the load balancer's log and ours; anything else is replaced by one of ours.
    The id is forgotten when the response is closed (request_finished), not when this returns: Django logs a 4xx
    or 5xx answer after the middleware, and gunicorn its access line, and both belong to the request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        request_finished.connect(_forget_request_id, dispatch_uid="request-id")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request_id.set(rid)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = rid
        return response


class AuditOriginMiddleware:
    """Make the request's IP address and user agent available to every audit event it records.

    See imports.audit.records.request_origin for why this is a context variable and not an argument.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_origin(request):
            return self.get_response(request)


class NulRefusalMiddleware:
    """Answer 400 to a query string with a NUL character (%00) in a name or a value.

    PostgreSQL text cannot hold NUL: a query value that reaches a lookup raises ValueError, a 500. The dashboard's
    own views read their queries through forms (whose CharFields refuse NUL), but the admin's changelist turns any
    query into a filter (?region__exact=%00), and a future view may forget. One check here covers every page; a
    query is a filter or a lookup, never content, so no legitimate request carries NUL. Bodies are left to the
    forms that read them: parsing every body here would take the editor's "too many fields" answer away.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(
                    f"The query parameter “{name.replace(chr(0), '%00')}” holds a NUL character (%00), "
                    "which no value here may contain.",
                    content_type="text/plain; charset=utf-8",
                )
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


LAST_ACTIVITY_SESSION_KEY = "last_activity"
# Saving the session on every request would be a database write per request; a minute is precise enough.
ACTIVITY_RESOLUTION_S = 60
# Polled fragments (progress bars) are requests a browser makes on its own: they do not keep a session alive.
POLLING_VIEWS = frozenset({"scan_progress", "draft_progress"})


def mark_activity_on_sign_in(
    sender: object, request: HttpRequest | None, **kwargs: Any
) -> None:
    """The clock starts at sign-in, saved with the new session, so the first page writes nothing more."""
    if request is not None and hasattr(request, "session"):
        request.session[LAST_ACTIVITY_SESSION_KEY] = int(time.time())


class SessionIdleTimeoutMiddleware:
    """Signs out a session that made no request for SESSION_IDLE_TIMEOUT seconds.

    SESSION_COOKIE_AGE caps a sign-in however busy it is; this catches the workstation left signed in.
    It must sit before LoginRequiredMiddleware, which then sends the signed-out request to the login page
    (htmx requests as a whole-page redirect).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> None:
        if not request.user.is_authenticated:
            return
        now = int(time.time())
        last = request.session.get(LAST_ACTIVITY_SESSION_KEY)
        if isinstance(last, int) and now - last > settings.SESSION_IDLE_TIMEOUT:
            # Through logout(), so the sign-out is audited like any other.
            logout(request)
            return
        match = request.resolver_match
        polling = match is not None and match.url_name in POLLING_VIEWS
        if not polling and (
            not isinstance(last, int) or now - last >= ACTIVITY_RESOLUTION_S
        ):
            request.session[LAST_ACTIVITY_SESSION_KEY] = now


class NoStoreMiddleware:
    """Cache-Control: no-store on every page and export the dashboard renders.

    Scan pages, previews, drafts and every CSV can carry patient names, IDs and S3 keys that name
    patients; a shared workstation's browser cache or a proxy must not keep them. Static files never
    get here (WhiteNoise answers them earlier), so they stay cacheable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        add_never_cache_headers(response)
        return response
