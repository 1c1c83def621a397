"""Four eyes on patient data: a draft whose mapped file sets a patient attribute is confirmed only once a second
person with the Approver permission has approved that very version; a later change voids it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from imports.drafts import approval
from imports.drafts import confirmation as confirming
from imports.drafts import services as drafts
from imports.models import AuditEvent, Datastore, DraftApproval, ImportDraft
from imports.roles import APPROVER, VIEWER
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    STUDY_A,
    STUDY_FILE,
    dicom_json,
    make_datastore,
    put_json,
    scan_prefix,
    seed_prefix,
)
from tests.conftest import _client_for, _user

pytestmark = pytest.mark.django_db

PATIENT_FILE = "metadata/patient-a.json"


@pytest.fixture
def store(db: None, localaws: LocalAWSHandle) -> Datastore:
    seed_prefix(localaws)
    put_json(
        localaws,
        PATIENT_FILE,
        dicom_json(
            **{"0020000D": ("UI", [STUDY_A]), "00100020": ("LO", ["PAT-SECRET-9"])}
        ),
    )
    scan_prefix()
    return make_datastore()


@pytest.fixture
def dave(db: None) -> User:
    """A viewer granted Approver on top."""
    user = _user("dave", VIEWER)
    user.groups.add(Group.objects.get(name=APPROVER))
    return user


def start(actor: User, store: Datastore, path: str = PATIENT_FILE) -> ImportDraft:
    draft = drafts.draft_start(
        actor=actor, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    return drafts.draft_assign(
        draft=draft, actor=actor, version=1, targets=[(STUDY_A, "")], path=path
    )


def confirm(draft: ImportDraft, actor: User) -> Any:
    draft.refresh_from_db()
    return confirming.draft_confirm(
        draft=draft, actor=actor, version=draft.version, content_hash=draft.content_hash,
        acknowledged_warnings=True, idempotency_key=f"key-{draft.version}-{DraftApproval.objects.count()}",
    )  # fmt: skip


def decide(client: Client, draft: ImportDraft, **fields: str) -> Any:
    draft.refresh_from_db()
    data = {
        "version": str(draft.version),
        "decision": "approve",
        "reason": "correction",
        **fields,
    }
    return client.post(reverse("imports:draft_approve", args=[draft.pk]), data)


def test_confirmation_is_refused_without_an_approval(
    store: Datastore, alice: User
) -> None:
    draft = start(alice, store)
    with pytest.raises(confirming.ApprovalMissing) as refused:
        confirm(draft, alice)
    message = str(refused.value)
    assert "PatientID (0010,0020) in 1 mapped file" in message
    assert "requires a second person with the Approver permission" in message
    assert "Nothing was confirmed." in message
    assert not draft.jobs.exists()


def test_a_draft_without_patient_changes_or_on_a_datastore_that_does_not_require_it_confirms(
    store: Datastore, alice: User, client_alice: Client
) -> None:
    plain = start(alice, store, STUDY_FILE)
    page = client_alice.get(
        reverse("imports:draft_confirm", args=[plain.pk])
    ).content.decode()
    assert 'id="approval-needed"' not in page
    assert confirm(plain, alice).pk
    Datastore.objects.filter(pk=store.pk).update(require_approval=False)
    assert confirm(start(alice, store), alice).pk


def test_an_approved_draft_confirms_and_the_job_page_names_the_approver(
    store: Datastore, alice: User, dave: User, client_alice: Client
) -> None:
    draft = start(alice, store)
    page = (
        _client_for(dave)
        .get(reverse("imports:draft_detail", args=[draft.pk]))
        .content.decode()
    )
    assert "Approve version 2" in page
    assert "PatientID (0010,0020)" in page
    response = decide(_client_for(dave), draft, note="checked against the RIS")
    assert response.status_code == 302
    record = DraftApproval.objects.get()
    assert (record.approver_username, record.draft_version, record.reason) == (
        "dave",
        2,
        "correction",
    )
    job = confirm(draft, alice)
    page = client_alice.get(
        reverse("imports:job_detail", args=[job.pk])
    ).content.decode()
    assert "Patient changes approved by <strong>dave</strong>" in page
    assert "checked against the RIS" in page
    event = AuditEvent.objects.get(action=AuditEvent.Action.DRAFT_APPROVED)
    assert event.details["tags"] == ["PatientID (0010,0020)"]
    assert event.details["author"] == "alice"
    assert "PAT-SECRET-9" not in json.dumps(event.details) + event.summary
    confirmed = AuditEvent.objects.get(action=AuditEvent.Action.DRAFT_CONFIRMED)
    assert confirmed.details["approval"] == record.pk


def test_the_author_of_the_last_change_cannot_approve_it(
    store: Datastore, carol: User, dave: User
) -> None:
    draft = start(
        carol, store
    )  # an administrator holds the permission, but made the change
    with pytest.raises(
        approval.ApprovalRefused, match="You made this draft's last change"
    ):
        approval.draft_decide(
            draft=draft, actor=carol, version=draft.version, approve=True, reason="merge", note=""
        )  # fmt: skip
    assert not DraftApproval.objects.exists()
    approval.draft_decide(
        draft=draft,
        actor=dave,
        version=draft.version,
        approve=True,
        reason="merge",
        note="",
    )
    assert confirm(draft, carol).pk


def test_a_change_after_the_approval_voids_it(
    store: Datastore, alice: User, dave: User
) -> None:
    draft = start(alice, store)
    approval.draft_decide(
        draft=draft, actor=dave, version=2, approve=True, reason="correction", note=""
    )
    drafts.draft_update_settings(
        draft=draft, actor=alice, version=2, job_name="renamed", output_s3_uri=OUTPUT
    )
    record = DraftApproval.objects.get()
    assert record.voided_at is not None
    voided = AuditEvent.objects.get(action=AuditEvent.Action.DRAFT_APPROVAL_VOIDED)
    assert voided.details == {"approval": record.pk, "approved_version": 2}
    with pytest.raises(
        confirming.ApprovalMissing, match="dave's approval was voided by a later change"
    ):
        confirm(draft, alice)
    # Approved again, for the version as it is now: it confirms.
    approval.draft_decide(
        draft=draft, actor=dave, version=3, approve=True, reason="correction", note=""
    )
    assert confirm(draft, alice).pk


def test_an_approval_of_a_version_the_approver_did_not_see_is_refused(
    store: Datastore, alice: User, dave: User
) -> None:
    draft = start(alice, store)
    with pytest.raises(
        approval.ApprovalRefused,
        match=r"changed since you opened it \(version 1, now 2\)",
    ):
        approval.draft_decide(
            draft=draft,
            actor=dave,
            version=1,
            approve=True,
            reason="correction",
            note="",
        )


def test_a_refusal_is_recorded_and_audited_and_confirmation_stays_refused(
    store: Datastore, alice: User, dave: User
) -> None:
    draft = start(alice, store)
    response = decide(
        _client_for(dave),
        draft,
        decision="refuse",
        reason="merge",
        note="wrong patient",
    )
    assert response.status_code == 302
    assert DraftApproval.objects.get().decision == DraftApproval.Decision.REFUSED
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.DRAFT_APPROVAL_REFUSED
    ).exists()
    with pytest.raises(confirming.ApprovalMissing, match="dave refused it"):
        confirm(draft, alice)


def test_only_approvers_may_post_and_a_bad_reason_is_named(
    store: Datastore, alice: User, dave: User, client_alice: Client, client_bob: Client
) -> None:
    draft = start(alice, store)
    assert decide(client_alice, draft).status_code == 403  # an operator
    assert decide(client_bob, draft).status_code == 403  # a viewer
    page = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert "Not approved yet." in page
    assert 'id="approval-form"' not in page
    response = decide(_client_for(dave), draft, reason="whim")
    assert response.status_code == 422
    assert (
        "&#x27;whim&#x27; is not a reason; choose correction, merge or de-identification."
        in (response.content.decode())
    )
    assert not DraftApproval.objects.exists()


def test_a_draft_with_no_patient_change_needs_no_approval(
    store: Datastore, alice: User, dave: User
) -> None:
    draft = start(alice, store, STUDY_FILE)
    with pytest.raises(approval.ApprovalRefused, match="set no patient attribute"):
        approval.draft_decide(
            draft=draft,
            actor=dave,
            version=2,
            approve=True,
            reason="correction",
            note="",
        )
