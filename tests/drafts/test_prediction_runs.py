"""A draft's prediction kept for every process, and run on a worker for a large draft with a progress bar
(imports/drafts/prediction_runs.py): the Django test client against image sets a real localaws job made, the
task's body called as the worker calls it, and one run on a real worker."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HTMX_STOP_POLLING

from imports import enqueue
from imports.drafts import prediction_runs
from imports.drafts import services as drafts
from imports.models import DraftPrediction, ImportDraft, ImportJob
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    make_localaws_datastore,
    scan_prefix,
    seed_prefix,
    stored_before,
)
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.django_db


def _draft(localaws: LocalAWSHandle, alice: User, *, forked: bool) -> ImportDraft:
    cache.clear()
    seed_prefix(localaws)
    store = make_localaws_datastore(localaws)
    if forked:
        stored_before(localaws, store, A2={"PatientID": "PAT-OTHER"})
    scan_prefix()
    draft = drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    draft.refresh_from_db()
    return draft


@pytest.fixture
def draft(localaws: LocalAWSHandle, alice: User) -> ImportDraft:
    return _draft(localaws, alice, forked=True)


def confirm_page(client: Client, draft: ImportDraft) -> str:
    response = client.get(reverse("imports:draft_confirm", args=[draft.pk]))
    assert response.status_code == 200
    return response.content.decode()


def confirm(client: Client, draft: ImportDraft) -> Any:
    draft.refresh_from_db()
    return client.post(
        reverse("imports:draft_confirm", args=[draft.pk]),
        {
            "version": draft.version,
            "content_hash": draft.content_hash,
            "idempotency_key": "6f1c0a52-3d0b-4b7e-9a57-0d9a3c1e2f11",
            "acknowledge_warnings": "on",
            "accept_non_primary": "on",
        },
    )


def test_a_small_drafts_prediction_is_kept_so_another_process_asks_aws_nothing(
    client_alice: Client, draft: ImportDraft, localaws: LocalAWSHandle
) -> None:
    assert "1 non-primary" in confirm_page(client_alice, draft)
    stored = DraftPrediction.objects.get(draft=draft)
    assert (stored.state, stored.content_hash) == ("done", draft.content_hash)
    # Another web process has a cache of its own: the row answers, not AWS.
    cache.clear()
    localaws.clear_calls()
    assert "1 non-primary" in confirm_page(client_alice, draft)
    assert localaws.calls("medical-imaging") == []
    # A change to the draft is another content: predicted again.
    drafts.draft_unmap(
        draft=draft,
        actor=None,
        version=draft.version,
        mapping_ids=[draft.mappings.first().pk],  # type: ignore[union-attr]
    )
    draft.refresh_from_db()
    confirm_page(client_alice, draft)
    assert localaws.calls("medical-imaging", "SearchImageSets")
    assert DraftPrediction.objects.filter(draft=draft).count() == 2


def test_an_answer_aws_could_not_give_is_not_kept(
    client_alice: Client, draft: ImportDraft, localaws: LocalAWSHandle
) -> None:
    localaws.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="AccessDeniedException",
        count=10,
    )
    assert "not predicted" in confirm_page(client_alice, draft).lower()
    assert not DraftPrediction.objects.exists()


def test_a_large_draft_is_predicted_on_a_worker_with_its_progress_on_the_page(
    client_alice: Client,
    draft: ImportDraft,
    localaws: LocalAWSHandle,
    settings: Any,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.PREDICTION_INLINE_STUDIES = 1
    localaws.clear_calls()
    with django_capture_on_commit_callbacks(execute=True):
        content = confirm_page(client_alice, draft)
    row = DraftPrediction.objects.get(draft=draft)
    assert sent_tasks == [(enqueue.DRAFT_PREDICT, row.pk)]
    assert "0 of 2 studies looked up" in content
    assert '<progress max="2" value="0"' in content
    assert "I accept that these series make non-primary image sets" not in content
    # The page asked AWS nothing itself.
    assert localaws.calls("medical-imaging") == []
    # Polled while it runs; a second page does not send a second task.
    polled = client_alice.get(reverse("imports:draft_prediction", args=[draft.pk]))
    assert polled.status_code == 200
    assert "studies looked up" in polled.content.decode()
    assert sent_tasks == [(enqueue.DRAFT_PREDICT, row.pk)]

    # Confirming now is refused with the progress, and creates nothing.
    refused = confirm(client_alice, draft)
    assert refused.status_code == 400
    assert (
        "still being predicted (0 of 2 studies looked up)" in refused.content.decode()
    )
    assert not ImportJob.objects.exists()

    prediction_runs.draft_prediction_run(prediction_id=row.pk)
    row.refresh_from_db()
    assert (row.state, row.studies_done, row.studies_total) == ("done", 2, 2)
    assert row.lease_until is None
    done = client_alice.get(reverse("imports:draft_prediction", args=[draft.pk]))
    assert done.status_code == HTMX_STOP_POLLING
    assert done["HX-Refresh"] == "true"
    content = confirm_page(client_alice, draft)
    assert "1 non-primary" in content
    assert "I accept that these series make non-primary image sets" in content
    with django_capture_on_commit_callbacks(execute=False):
        assert confirm(client_alice, draft).status_code == 302
    assert ImportJob.objects.get().prediction["non_primary"] == 1


def test_a_duplicate_message_does_nothing_and_a_changed_draft_drops_the_old_row(
    draft: ImportDraft, localaws: LocalAWSHandle, settings: Any
) -> None:
    settings.PREDICTION_INLINE_STUDIES = 1
    state = prediction_runs.draft_prediction_state(draft=draft)
    assert state.running
    row = DraftPrediction.objects.get(draft=draft)
    # Held by a live task: a second message claims nothing and asks AWS nothing.
    DraftPrediction.objects.filter(pk=row.pk).update(
        lease_until=timezone.now() + timedelta(minutes=1)
    )
    localaws.clear_calls()
    prediction_runs.draft_prediction_run(prediction_id=row.pk)
    assert localaws.calls("medical-imaging") == []
    assert DraftPrediction.objects.get(pk=row.pk).state == "running"
    # The draft changed before the task ran: its row is no one's any more.
    DraftPrediction.objects.filter(pk=row.pk).update(lease_until=None)
    ImportDraft.objects.filter(pk=draft.pk).update(content_hash="0" * 64)
    prediction_runs.draft_prediction_run(prediction_id=row.pk)
    assert not DraftPrediction.objects.filter(pk=row.pk).exists()


def test_a_task_that_died_is_replaced_once_its_lease_has_lapsed(
    draft: ImportDraft,
    settings: Any,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.PREDICTION_INLINE_STUDIES = 1
    with django_capture_on_commit_callbacks(execute=True):
        prediction_runs.draft_prediction_state(draft=draft)
    row = DraftPrediction.objects.get(draft=draft)
    DraftPrediction.objects.filter(pk=row.pk).update(
        lease_until=timezone.now() + timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        prediction_runs.draft_prediction_state(draft=draft)
    assert sent_tasks == [(enqueue.DRAFT_PREDICT, row.pk)]
    DraftPrediction.objects.filter(pk=row.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        prediction_runs.draft_prediction_state(draft=draft)
    assert sent_tasks == [(enqueue.DRAFT_PREDICT, row.pk)] * 2


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_on_a_real_worker_the_page_fills_in_by_itself(
    celery_worker_process: WorkerProcess,
    localaws: LocalAWSHandle,
    alice: User,
    settings: Any,
) -> None:
    draft = _draft(localaws, alice, forked=True)
    settings.PREDICTION_INLINE_STUDIES = 1
    client = Client()
    client.force_login(alice)
    assert "studies looked up" in confirm_page(client, draft)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        polled = client.get(reverse("imports:draft_prediction", args=[draft.pk]))
        if polled.status_code == HTMX_STOP_POLLING:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(
            f"the worker never predicted the draft; worker log:\n{celery_worker_process.output()}"
        )
    row = DraftPrediction.objects.get(draft=draft)
    assert (row.state, row.studies_done) == ("done", 2)
    assert "1 non-primary" in confirm_page(client, draft)
