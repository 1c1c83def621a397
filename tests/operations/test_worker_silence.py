"""The dashboard says when queued work has no worker: a stale (or missing) heartbeat and work waiting longer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imports.models import Datastore, Heartbeat, ImportJob, Scan
from imports.operations import health
from tests.builders import make_job, make_scan

MAX_AGE_S = 60.0


def _age(model: Any, pk: int, seconds: float) -> None:
    model.objects.filter(pk=pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def _dashboard(client: Client) -> str:
    return client.get(reverse("imports:dashboard")).content.decode()


def test_queued_work_with_a_stale_heartbeat_is_named_on_the_dashboard(
    client_bob: Client, datastore: Datastore, settings: Any
) -> None:
    settings.HEALTH_BEAT_MAX_AGE_S = MAX_AGE_S
    Heartbeat.objects.create(
        name=health.BEAT, at=timezone.now() - timedelta(seconds=300)
    )
    scan = make_scan()
    _age(Scan, scan.pk, 200)
    job = make_job(datastore)
    _age(ImportJob, job.pk, 200)
    html = _dashboard(client_bob)
    assert 'id="no-worker"' in html
    assert (
        "No Celery worker has answered for 30" in html
    )  # 300 s, give or take the test's own time
    assert "1 scan and 1 import job are waiting in the queue" in html


def test_without_any_heartbeat_the_silence_counts_from_the_oldest_waiting_item(
    datastore: Datastore, settings: Any
) -> None:
    settings.HEALTH_BEAT_MAX_AGE_S = MAX_AGE_S
    job = make_job(datastore)
    _age(ImportJob, job.pk, 500)
    silence = health.worker_silence()
    assert silence is not None
    assert (silence.scans, silence.jobs) == (0, 1)
    assert 500 <= silence.seconds < 560


def test_a_fresh_heartbeat_or_no_old_waiting_work_shows_nothing(
    client_bob: Client, datastore: Datastore, settings: Any
) -> None:
    settings.HEALTH_BEAT_MAX_AGE_S = MAX_AGE_S
    job = make_job(datastore)
    # Just queued: waiting its turn, however old the heartbeat.
    Heartbeat.objects.create(
        name=health.BEAT, at=timezone.now() - timedelta(seconds=300)
    )
    assert health.worker_silence() is None
    # Waiting long, but a worker answered beat a moment ago: it is busy, not gone.
    _age(ImportJob, job.pk, 200)
    Heartbeat.objects.filter(name=health.BEAT).update(at=timezone.now())
    assert health.worker_silence() is None
    assert 'id="no-worker"' not in _dashboard(client_bob)
    # Work that is no longer queued does not count.
    Heartbeat.objects.filter(name=health.BEAT).update(
        at=timezone.now() - timedelta(seconds=300)
    )
    assert health.worker_silence() is not None
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.SUBMITTED)
    assert health.worker_silence() is None
