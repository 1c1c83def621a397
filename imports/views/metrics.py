"""/metrics for Prometheus: no login, a bearer token instead, not audited; off (404) until a token is set."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from imports.operations import metrics as scrape


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not scrape.metrics_enabled():
        raise Http404("Metrics are off: DJANGO_METRICS_TOKEN is not set.")
    if not scrape.metrics_authorized(
        authorization=request.headers.get("Authorization", "")
    ):
        refused = HttpResponse(
            "Send Authorization: Bearer <DJANGO_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    body, content_type = scrape.metrics_exposition()
    return HttpResponse(body, content_type=content_type)
