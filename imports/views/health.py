"""/healthz and /readyz for load balancers and orchestrators: no login, JSON, 503 when not healthy."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from imports.operations import health as probes


def _answer(result: probes.Health) -> JsonResponse:
    return JsonResponse(
        {"status": "ok" if result.healthy else "unhealthy", **result.checks},
        status=200 if result.healthy else 503,
    )


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return _answer(probes.health())


@login_not_required
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    return _answer(probes.readiness())
