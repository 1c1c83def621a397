"""What every AWS call costs, counted at the door: imports.aws.client instruments each client it builds.

botocore's `before-parameter-build` and `after-call` events bracket one API call, its own retries included, so
a call is counted once however many attempts it took; `after-call-error` is a call that got no answer at all.
The scanner's ranged GETs skip botocore's machinery (imports.aws.ranged) and are counted by `s3_get_range`.

In prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, config/settings.py) the counts live in
files that every gunicorn and Celery process writes, and /metrics adds them up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "imports_aws_calls",
    "AWS API calls, by operation and outcome (ok, throttled, access_denied, not_found, unavailable, unreachable, ...).",
    ["operation", "outcome"],
)
CALL_SECONDS = Histogram(
    "imports_aws_call_seconds",
    "Time of one AWS API call, botocore's retries included.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

OK = "ok"
UNREACHABLE = "unreachable"


@functools.cache
def _series(operation: str, outcome: str) -> tuple[Any, Any]:
    # .labels() looks its child up under a lock on every call; the scanner counts thousands of GETs a second.
    return CALLS.labels(operation=operation, outcome=outcome), CALL_SECONDS.labels(
        operation=operation
    )


def record_call(operation: str, outcome: str, seconds: float) -> None:
    calls, duration = _series(operation, outcome)
    calls.inc()
    duration.observe(seconds)


# The start time rides in the call's context, the dictionary botocore hands every handler of one call.
_STARTED = "imports_metrics_started"


def instrument(client: Any, outcome_of: Callable[[str, int], str]) -> None:
    """Count every call `client` makes; `outcome_of(code, status)` names an error answer (imports.aws.client)."""

    def started(context: dict[str, Any], **kwargs: Any) -> None:
        context[_STARTED] = time.perf_counter()

    def answered(
        event_name: str,
        http_response: Any,
        parsed: Any,
        context: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        begun = context.pop(_STARTED, None)
        if begun is None:
            return
        status = int(getattr(http_response, "status_code", 0))
        code = (
            str((parsed or {}).get("Error", {}).get("Code", ""))
            if status >= 300
            else ""
        )
        outcome = OK if status < 300 else outcome_of(code, status)
        # The event is named "after-call.<service>.<operation>".
        record_call(event_name.rsplit(".", 1)[-1], outcome, time.perf_counter() - begun)

    def unanswered(event_name: str, context: dict[str, Any], **kwargs: Any) -> None:
        begun = context.pop(_STARTED, None)
        if begun is not None:
            record_call(
                event_name.rsplit(".", 1)[-1], UNREACHABLE, time.perf_counter() - begun
            )

    # before-parameter-build, not before-call: every handler of it runs, where a before-call handler that
    # answers (botocore's Stubber) stops the ones after it.
    client.meta.events.register("before-parameter-build", started)
    client.meta.events.register("after-call", answered)
    client.meta.events.register("after-call-error", unanswered)
