"""imports.enqueue: every task by its registered name, after commit, and a broker outage loses nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from config.celery import app as celery_app
from imports import enqueue
from imports.models import Scan
from imports.scanning import control


def test_every_name_enqueue_sends_is_a_registered_task() -> None:
    celery_app.loader.import_default_modules()
    registered = set(celery_app.tasks)
    assert set(enqueue.TASK_NAMES) <= registered, set(enqueue.TASK_NAMES) - registered


def test_a_name_that_is_not_a_task_is_refused_before_anything_is_sent(
    sent_tasks: list[tuple[str, int]],
) -> None:
    with pytest.raises(ValueError, match="imports.scan_prefx"):
        enqueue.enqueue_task("imports.scan_prefx", 1)
    assert sent_tasks == []


@pytest.mark.django_db
def test_the_message_goes_only_after_commit_and_never_for_a_rollback(
    sent_tasks: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        enqueue.enqueue_task(enqueue.JOB_SUBMIT, 7)
        assert sent_tasks == []
    assert sent_tasks == [(enqueue.JOB_SUBMIT, 7)]

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            enqueue.enqueue_task(enqueue.JOB_SUBMIT, 8)
            raise RuntimeError("rolled back")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        enqueue_then_fail()
    assert callbacks == []
    assert sent_tasks == [(enqueue.JOB_SUBMIT, 7)]


def test_with_the_broker_down_sending_says_so_and_raises_nothing(
    broker_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert enqueue.send(enqueue.SCAN_PREFIX, 3) is False
    assert "imports.scan_prefix for row 3 waits for the broker (OperationalError)" in (
        caplog.text
    )


@pytest.mark.django_db
def test_starting_a_scan_with_the_broker_down_answers_waiting_for_a_worker(
    client_alice: Any,
    datastore: Any,
    broker_down: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post("/scans/start/", {"datastore": str(datastore.pk)})
    scan = Scan.objects.get()
    assert response.status_code == 302
    assert scan.status == Scan.Status.QUEUED
    assert (
        "Waiting for a worker"
        in client_alice.get(f"/scans/{scan.pk}/").content.decode()
    )


@pytest.mark.django_db
def test_beat_sends_again_only_the_scans_queued_for_over_a_minute(
    sent_tasks: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    old, _ = control.scan_start(
        actor=None, bucket="b", prefix="old/", region="us-east-1", enqueue=False
    )
    fresh, _ = control.scan_start(
        actor=None, bucket="b", prefix="new/", region="us-east-1", enqueue=False
    )
    done, _ = control.scan_start(
        actor=None, bucket="b", prefix="done/", region="us-east-1", enqueue=False
    )
    minutes_ago = timezone.now() - timedelta(minutes=2)
    Scan.objects.filter(pk__in=[old.pk, done.pk]).update(created_at=minutes_ago)
    Scan.objects.filter(pk=done.pk).update(status=Scan.Status.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        assert control.scans_recover_stalled() == [old.pk]
    assert sent_tasks == [(enqueue.SCAN_PREFIX, old.pk)]
