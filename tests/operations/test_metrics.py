"""/metrics: a bearer token or nothing, Prometheus text whose numbers come from the database, the broker and
the counters at the door to AWS and in the limiter, added up over processes in multiprocess mode."""

from __future__ import annotations

import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import kombu
import pytest
from botocore.stub import Stubber
from celery import current_app
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from imports.aws import client as aws
from imports.jobs import limiter
from imports.models import Heartbeat, ImportJob, Scan
from imports.operations import health
from imports.operations import metrics as scrape
from tests.builders import make_job, make_scan

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-0123456789"
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def _scrape(
    client: Client, token: str = TOKEN
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- The token ---------------------------------------------------------------------------------


def test_metrics_are_off_while_no_token_is_set(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_a_scrape_without_a_token_is_refused(client: Client, token: str) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"imports_" not in response.content


def test_a_scrape_with_a_wrong_token_is_refused(client: Client, token: str) -> None:
    for authorization in (
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
    ):
        response = client.get("/metrics", HTTP_AUTHORIZATION=authorization)
        assert response.status_code == 401, authorization


def test_a_scrape_with_the_token_needs_no_login(client: Client, token: str) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"# TYPE imports_jobs gauge" in response.content
    assert (
        "no-store" in response["Cache-Control"]
        or "no-cache" in response["Cache-Control"]
    )


def test_the_token_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert scrape.metrics_authorized(authorization=f"Bearer {TOKEN}")
    assert not scrape.metrics_authorized(authorization="Bearer nope")
    assert compared == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]


def test_a_scrape_is_not_audited(client: Client, token: str) -> None:
    from imports.models import AuditEvent

    before = AuditEvent.objects.count()
    _scrape(client)
    client.get("/metrics")
    assert AuditEvent.objects.count() == before


# --- What the database says --------------------------------------------------------------------


def test_jobs_and_running_scans_are_counted_from_the_database(
    client: Client, token: str, datastore: Any
) -> None:
    make_job(datastore, status=ImportJob.Status.COMPLETED)
    make_job(datastore, status=ImportJob.Status.COMPLETED)
    make_job(datastore, status=ImportJob.Status.FAILED)
    make_scan(prefix="a/", status=Scan.Status.RUNNING)
    make_scan(prefix="b/", status=Scan.Status.COMPLETED)
    samples = _scrape(client)
    assert samples["imports_jobs", (("status", "completed"),)] == 2
    assert samples["imports_jobs", (("status", "failed"),)] == 1
    # Every status is there, zero or not, so a rate over it never starts from nothing.
    assert samples["imports_jobs", (("status", "in_progress"),)] == 0
    assert samples["imports_scans_running", ()] == 1

    Scan.objects.update(status=Scan.Status.CANCELLED)
    assert _scrape(client)["imports_scans_running", ()] == 0


def test_the_heartbeat_age_is_absent_before_the_first_and_grows_after(
    client: Client, token: str
) -> None:
    assert not any(
        name == "imports_beat_heartbeat_age_seconds" for name, _ in _scrape(client)
    )
    health.beat_heartbeat()
    Heartbeat.objects.filter(name=health.BEAT).update(
        at=timezone.now() - timedelta(seconds=90)
    )
    age = _scrape(client)["imports_beat_heartbeat_age_seconds", ()]
    assert 90 <= age < 120


# --- What the broker says ----------------------------------------------------------------------


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"metrics-test-{uuid.uuid4().hex[:8]}"
    yield name
    with current_app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        channel.queue_purge(name)


def test_the_queue_depth_is_what_the_broker_holds(queue: str) -> None:
    assert scrape.queue_depths([queue]) == {queue: 0}
    # A connection of its own, not Celery's producer pool: test_health's broker fixture closes the pools, and a
    # producer made here before it would then fail every later apply_async.
    with current_app.connection_for_write() as conn, conn.Producer() as producer:
        for number in range(2):
            producer.publish(
                {"number": number}, routing_key=queue, declare=[kombu.Queue(queue)]
            )
    assert scrape.queue_depths([queue]) == {queue: 2}


def test_the_scrape_names_each_of_the_app_queues(client: Client, token: str) -> None:
    samples = _scrape(client)
    for queue in ("default", "scan", "submit", "poll"):
        assert ("imports_queue_depth", (("queue", queue),)) in samples
    assert ("imports_queue_depth", (("queue", "celery"),)) not in samples


@pytest.fixture
def broker_away(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A broker nobody listens on, a Redis URL on a closed port, for the connections queue_depths opens.

    Celery's pools are left alone: closing them would break the producers of the tests after this one.
    """
    conf: Any = current_app.conf
    previous = conf.broker_url, conf.broker_transport, conf.broker_read_url
    # Celery reads CELERY_BROKER_URL from the environment before its own setting (CI's Redis sets it).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")
    conf.broker_url, conf.broker_transport, conf.broker_read_url = (
        "redis://127.0.0.1:9/0",
        None,
        None,
    )
    try:
        yield
    finally:
        conf.broker_url, conf.broker_transport, conf.broker_read_url = previous


def test_a_broker_away_leaves_the_queue_out_and_the_rest_in(
    client: Client, token: str, broker_away: None
) -> None:
    assert scrape.queue_depths(["celery"]) is None
    samples = _scrape(client)
    assert not any(name == "imports_queue_depth" for name, _ in samples)
    assert ("imports_scans_running", ()) in samples


def test_a_broker_that_does_not_answer_in_time_is_left_out(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    import threading

    release = threading.Event()
    monkeypatch.setattr(scrape, "_read_queue_depths", lambda queues: release.wait(5))
    settings.HEALTH_PROBE_TIMEOUT_S = 0.2
    try:
        assert scrape.queue_depths(["celery"]) is None
    finally:
        release.set()


# --- Counted at the door to AWS and in the limiter ---------------------------------------------


def test_aws_calls_are_counted_by_operation_and_outcome() -> None:
    ok = _count("imports_aws_calls_total", operation="ListObjectsV2", outcome="ok")
    denied = _count(
        "imports_aws_calls_total", operation="ListObjectsV2", outcome="access_denied"
    )
    timed = _count("imports_aws_call_seconds_count", operation="ListObjectsV2")
    client = aws.s3_client("us-east-1")
    with Stubber(client) as stub:
        stub.add_response("list_objects_v2", {"KeyCount": 0, "IsTruncated": False})
        stub.add_client_error(
            "list_objects_v2", service_error_code="AccessDenied", http_status_code=403
        )
        aws.s3_list_page(region="us-east-1", bucket="b", prefix="p/")
        with pytest.raises(aws.AccessDenied):
            aws.s3_list_page(region="us-east-1", bucket="b", prefix="p/")
    assert (
        _count("imports_aws_calls_total", operation="ListObjectsV2", outcome="ok")
        == ok + 1
    )
    assert (
        _count(
            "imports_aws_calls_total",
            operation="ListObjectsV2",
            outcome="access_denied",
        )
        == denied + 1
    )
    assert (
        _count("imports_aws_call_seconds_count", operation="ListObjectsV2") == timed + 2
    )


@pytest.fixture
def aws_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint nobody listens on, with credentials, so that a call fails for want of an answer."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    aws.reset_clients()


def test_an_aws_call_without_an_answer_is_counted_unreachable(aws_away: None) -> None:
    listed = _count(
        "imports_aws_calls_total", operation="ListObjectsV2", outcome="unreachable"
    )
    ranged = _count(
        "imports_aws_calls_total", operation="GetObject", outcome="unreachable"
    )
    with pytest.raises(aws.Unreachable):
        aws.s3_list_page(region="us-east-1", bucket="b", prefix="p/")
    # The scanner's ranged GETs take their own path (imports.aws.ranged) and are counted too.
    with pytest.raises(aws.Unreachable):
        aws.s3_get_range(region="us-east-1", bucket="b", key="k", start=0, end=1)
    assert (
        _count(
            "imports_aws_calls_total", operation="ListObjectsV2", outcome="unreachable"
        )
        == listed + 1
    )
    assert (
        _count("imports_aws_calls_total", operation="GetObject", outcome="unreachable")
        == ranged + 1
    )


def test_the_limiter_wait_is_observed_acquired_or_timed_out() -> None:
    acquired = _count("imports_limiter_wait_seconds_count", outcome="acquired")
    timed_out = _count("imports_limiter_wait_seconds_count", outcome="timed_out")
    name = f"tests.metrics.{uuid.uuid4().hex}"
    assert limiter.acquire(name, 60, timeout_s=1)
    assert not limiter.acquire(name, 60, timeout_s=0.05)
    assert (
        _count("imports_limiter_wait_seconds_count", outcome="acquired") == acquired + 1
    )
    assert (
        _count("imports_limiter_wait_seconds_count", outcome="timed_out")
        == timed_out + 1
    )


def test_the_counters_are_listed_in_a_scrape(client: Client, token: str) -> None:
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    for name in (
        "imports_jobs",
        "imports_scans_running",
        "imports_aws_calls_total",
        "imports_aws_call_seconds",
        "imports_limiter_wait_seconds",
        "imports_queue_depth",
    ):
        assert f"# TYPE {name} " in body, name


# --- Several processes -------------------------------------------------------------------------

# What a gunicorn or Celery worker does: start Django (which turns multiprocess mode on), then count calls.
_WORKER = """
import sys, django
django.setup()
from imports.aws import metrics
for _ in range(int(sys.argv[1])):
    metrics.record_call("ListObjectsV2", "ok", 0.02)
"""


def test_counts_from_two_processes_add_up_in_one_scrape(
    client: Client, token: str, settings: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "prometheus"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(times)], cwd=ROOT, env=environment
        )
        for times in (3, 4)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    assert len(list(folder.glob("counter_*.db"))) == 2  # one file per process

    settings.PROMETHEUS_MULTIPROC_DIR = str(folder)
    samples = _scrape(client)
    labels = (("operation", "ListObjectsV2"), ("outcome", "ok"))
    assert samples["imports_aws_calls_total", labels] == 7
    assert (
        samples["imports_aws_call_seconds_count", (("operation", "ListObjectsV2"),)]
        == 7
    )
    # The state read at scrape time is there too, once.
    assert ("imports_scans_running", ()) in samples


def test_settings_turn_multiprocess_mode_on_with_a_token_only() -> None:
    code = "from django.conf import settings; print(settings.PROMETHEUS_MULTIPROC_DIR)"
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    base.pop("DJANGO_METRICS_TOKEN", None)
    base["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    off = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=True,
    )
    on = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env={**base, "DJANGO_METRICS_TOKEN": "t"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert off.stdout.strip() == ""
    assert on.stdout.strip() == str(ROOT / "var" / "prometheus")
