"""The confirmation page's "What this import will do": counts, non-primary series side by side (patient values
masked unless revealed), the cost, and the acceptance that confirming needs when a series would fork; with the
Django test client against image sets a real localaws import job made."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from imports.drafts import services as drafts
from imports.models import AuditEvent, Datastore, ImportDraft, ImportJob
from imports.views.drafts import REVEALED_SESSION_KEY
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    SERIES_A2,
    make_localaws_datastore,
    scan_prefix,
    seed_prefix,
    stored_before,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db: None, localaws: LocalAWSHandle) -> LocalAWSHandle:
    cache.clear()
    seed_prefix(localaws)
    return localaws


@pytest.fixture
def store(world: LocalAWSHandle) -> Datastore:
    return make_localaws_datastore(world)


@pytest.fixture
def draft(world: LocalAWSHandle, store: Datastore, alice: User) -> ImportDraft:
    scan_prefix()
    draft = drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    draft.refresh_from_db()
    return draft


def page(client: Client, draft: ImportDraft) -> str:
    response = client.get(reverse("imports:draft_confirm", args=[draft.pk]))
    assert response.status_code == 200
    return response.content.decode()


def confirm(client: Client, draft: ImportDraft, **extra: Any) -> Any:
    draft.refresh_from_db()
    return client.post(
        reverse("imports:draft_confirm", args=[draft.pk]),
        {
            "version": draft.version,
            "content_hash": draft.content_hash,
            "idempotency_key": "6f1c0a52-3d0b-4b7e-9a57-0d9a3c1e2f11",
            "acknowledge_warnings": "on",
            **extra,
        },
    )


@pytest.fixture
def forked(world: LocalAWSHandle, store: Datastore) -> None:
    """Series A2 is stored with another patient ID: importing it again would fork."""
    stored_before(world, store, A2={"PatientID": "PAT-OTHER"})


def test_the_page_counts_the_outcomes_and_lists_a_non_primary_series_masked(
    client_alice: Client, draft: ImportDraft, forked: None
) -> None:
    content = page(client_alice, draft)
    assert 'id="prediction"' in content
    assert "<strong>2</strong> new image sets" in content
    assert "1 non-primary" in content
    assert SERIES_A2 in content
    assert "PatientID" in content
    assert "PAT-OTHER" not in content
    assert "P***" in content
    assert "at least 5 MB" in content
    assert "30 days" in content
    assert "I accept that these series make non-primary image sets" in content


def test_revealed_patient_values_are_shown_side_by_side(
    client_alice: Client, draft: ImportDraft, forked: None
) -> None:
    session = client_alice.session
    session[REVEALED_SESSION_KEY] = [draft.pk]
    session.save()
    content = page(client_alice, draft)
    assert "<td>PAT-1</td><td>PAT-OTHER</td>" in content


def test_confirming_a_fork_needs_the_acceptance_and_nothing_is_created_without_it(
    client_alice: Client,
    draft: ImportDraft,
    forked: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    refused = confirm(client_alice, draft)
    assert refused.status_code == 400
    content = refused.content.decode()
    assert 'id="non-primary-refusal"' in content
    assert "1 series would make a non-primary image set" in content
    # The refusal stands next to the checkbox.
    assert content.index('id="accept-non-primary"') < content.index(
        'id="non-primary-refusal"'
    )
    assert not ImportJob.objects.exists()
    assert not AuditEvent.objects.filter(action="draft.confirmed").exists()
    with django_capture_on_commit_callbacks(execute=False):
        accepted = confirm(client_alice, draft, accept_non_primary="on")
    assert accepted.status_code == 302
    assert ImportJob.objects.count() == 1
    event = AuditEvent.objects.get(action="draft.confirmed")
    assert event.details["prediction"] == {
        "new": 2,
        "adds_to": 0,
        "non_primary": 1,
        "not_predicted": 0,
    }
    assert event.details["accepted_non_primary"] is True
    # The job keeps the prediction, series by series, for its verification (imports.jobs.verification).
    job = ImportJob.objects.get()
    assert (job.prediction["non_primary"], job.prediction["accepted_non_primary"]) == (
        1,
        True,
    )
    assert sorted(s["outcome"] for s in job.prediction["series"]) == [
        "new",
        "new",
        "non_primary",
    ]


def test_without_a_fork_there_is_nothing_to_accept(
    client_alice: Client,
    draft: ImportDraft,
    world: LocalAWSHandle,
    store: Datastore,
    django_capture_on_commit_callbacks: Any,
) -> None:
    stored_before(world, store, B1={})
    content = page(client_alice, draft)
    assert "<strong>1</strong> series added to an image set" in content
    assert "I accept that these series make non-primary image sets" not in content
    with django_capture_on_commit_callbacks(execute=False):
        assert confirm(client_alice, draft).status_code == 302
    assert (
        AuditEvent.objects.get(action="draft.confirmed").details["accepted_non_primary"]
        is False
    )


def test_when_prediction_cannot_run_the_page_says_so_and_confirming_still_works(
    client_alice: Client,
    draft: ImportDraft,
    world: LocalAWSHandle,
    django_capture_on_commit_callbacks: Any,
) -> None:
    world.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="AccessDeniedException",
        count=100,
    )
    content = page(client_alice, draft)
    assert 'id="not-predicted"' in content
    assert "3 series not predicted" in content
    assert "medical-imaging:SearchImageSets" in content
    with django_capture_on_commit_callbacks(execute=False):
        assert confirm(client_alice, draft).status_code == 302
    assert (
        AuditEvent.objects.get(action="draft.confirmed").details["prediction"][
            "not_predicted"
        ]
        == 3
    )
