"""What every AWS call costs, counted at the door (imports.aws.client registers these on each client it builds).

botocore's `before-parameter-build` and `after-call` events bracket one API call, its own retries included, so a call is
counted once however many attempts it took; `after-call-error` is a call that got no answer at all. The scanner's
ranged GETs skip botocore's machinery (imports.aws.ranged) and are counted by `s3_get_range` itself.

In prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, config/settings.py) these live in files that
every gunicorn and Celery process writes, and /metrics adds them up.
"""

from __future__ import annotations

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


def record_call(operation: str, outcome: str, seconds: float) -> None:
    CALLS.labels(operation=operation, outcome=outcome).inc()
    CALL_SECONDS.labels(operation=operation).observe(seconds)
