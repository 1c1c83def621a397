"""The composer's "Corrections from a spreadsheet": upload and review, masking, refusals, write and map, conflicts.

Django's test client against the corrections world (tests/corrections/conftest.py), scanned from localaws over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from imports.corrections.composer import MAX_UPLOAD_BYTES
from imports.drafts import services as drafts
from imports.models import AuditEvent, Datastore, ImportDraft, ObjectHeader, Scan
from imports.views.corrections import SHEET_SESSION_KEY
from imports.views.drafts import REVEALED_SESSION_KEY
from localaws.testing import LocalAWSHandle
from tests.builders import BUCKET, INPUT, PREFIX, scan_prefix
from tests.corrections.conftest import MERGE_1, MERGE_2, MERGE_3, TWIN_A, ZEROS

pytestmark = pytest.mark.django_db

# Two studies' PatientID by accession number, and a merge of PAT-M's three studies into PAT-Z.
GOOD = (
    'AccessionNumber,PatientID,Scope,"(0010,0020)",StudyDescription\n'
    "0012345,,,000988,CT BRAIN\n"
    "DUP,PAT-A,,PAT-A2,\n"
    ",PAT-M,patient,PAT-Z,\n"
)


QUERIES = 12


@pytest.fixture
def draft(scan: Scan, store: Datastore, alice: User) -> ImportDraft:
    return _draft(store, alice)


def _draft(store: Datastore, alice: User) -> ImportDraft:
    return drafts.draft_start(
        actor=alice,
        datastore=store,
        input_s3_uri=INPUT,
        output_s3_uri=store.output_s3_uri,
    )


def upload(
    client: Client, draft: ImportDraft, text: str | bytes, name: str = "sheet.csv"
):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        reverse("imports:draft_corrections", kwargs={"pk": draft.pk}),
        {"sheet": SimpleUploadedFile(name, data, content_type="text/csv")},
    )


def write_and_map(client: Client, draft: ImportDraft, sha256: str):
    draft.refresh_from_db()
    return client.post(
        reverse("imports:draft_corrections_write", kwargs={"pk": draft.pk}),
        {"version": draft.version, "sha256": sha256},
    )


def written(localaws: LocalAWSHandle) -> list[str]:
    """The correction files in the bucket (S3 itself, over HTTP) and in the scan's record of it."""
    listed = localaws.s3_client().list_objects_v2(
        Bucket=BUCKET, Prefix=f"{PREFIX}metadata/corrections/"
    )
    recorded = ObjectHeader.objects.filter(key__contains="metadata/corrections/")
    return [o["Key"] for o in listed.get("Contents", [])] + [h.key for h in recorded]


def stored(localaws: LocalAWSHandle, key: str) -> dict[str, Any]:
    body = localaws.s3_client().get_object(Bucket=BUCKET, Key=PREFIX + key)["Body"]
    document: dict[str, Any] = json.loads(body.read())
    return document


def test_the_review_shows_the_diff_and_summary_with_patient_values_masked(
    draft: ImportDraft,
    client_alice: Client,
    localaws: LocalAWSHandle,
    django_assert_max_num_queries: Any,
) -> None:
    # The index is read whole, not a query per row (imports.corrections.matching).
    with django_assert_max_num_queries(QUERIES):
        response = upload(client_alice, draft, GOOD)
    assert response.status_code == 200
    page = response.content.decode()
    review = response.context["review"]
    assert (review.studies, review.patients, review.changes) == (5, 3, 6)
    assert review.attributes == ["PatientID", "StudyDescription"]
    assert review.patient_attributes == ["PatientID"]
    assert "patient merge, 3 studies" in page
    for uid in (ZEROS, TWIN_A, MERGE_1, MERGE_2, MERGE_3):
        assert uid in page
    # Not revealed: the patient values are masked, the others are not.
    for shown in (
        "“0***” ×2",
        "→ “0***”",
        "“CT HEAD” ×1, “CT Head” ×1",
        "→ “CT BRAIN”",
    ):
        assert shown in page
    for hidden in ("000987", "000988", "PAT-A2", "PAT-Z"):
        assert hidden not in page
    assert 'id="corrections-write"' in page
    # A review writes nothing.
    assert written(localaws) == []


def test_a_revealed_draft_shows_the_patient_values_of_the_review(
    draft: ImportDraft, client_alice: Client
) -> None:
    session = client_alice.session
    session[REVEALED_SESSION_KEY] = [draft.pk]
    session.save()
    page = upload(client_alice, draft, GOOD).content.decode()
    for shown in ("“000987” ×2", "→ “000988”", "→ “PAT-Z”"):
        assert shown in page


def test_revealing_from_the_review_is_audited_and_shows_it_again_unmasked(
    draft: ImportDraft, client_alice: Client
) -> None:
    upload(client_alice, draft, GOOD)
    response = client_alice.post(
        reverse("imports:draft_reveal", kwargs={"pk": draft.pk}),
        {"back": "corrections"},
    )
    review_url = reverse("imports:draft_corrections", kwargs={"pk": draft.pk})
    assert response["Location"] == review_url
    event = AuditEvent.objects.get(action=AuditEvent.Action.PHI_REVEALED)
    assert f"the correction sheet review of import draft {draft.pk}" in event.summary
    assert "→ “PAT-Z”" in client_alice.get(review_url).content.decode()
    client_alice.post(
        reverse("imports:draft_reveal", kwargs={"pk": draft.pk}),
        {"back": "corrections", "hide": "1"},
    )
    assert "→ “PAT-Z”" not in client_alice.get(review_url).content.decode()


def test_the_review_without_a_sheet_held_goes_back_to_the_composer(
    draft: ImportDraft, client_alice: Client
) -> None:
    response = client_alice.get(
        reverse("imports:draft_corrections", kwargs={"pk": draft.pk})
    )
    assert response["Location"] == reverse(
        "imports:draft_detail", kwargs={"pk": draft.pk}
    )


def test_a_refused_sheet_shows_each_row_and_column_and_writes_nothing(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    response = upload(
        client_alice,
        draft,
        "AccessionNumber,StudyDescription,SOPInstanceUID\n12345,CT,1.2.3\nNOPE,MR,\n",
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "The sheet is refused: nothing was written" in page
    assert [(p.column, p.code) for p in response.context["review"].refusals] == [
        ("SOPInstanceUID", "bad_header")
    ]
    assert "a sheet cannot change it" in page
    assert 'id="corrections-write"' not in page
    response = upload(
        client_alice, draft, "AccessionNumber,StudyDescription\n12345,CT\nNOPE,MR\n"
    )
    assert response.status_code == 422
    problems = response.context["review"].problems
    assert [(p.row, p.column) for p in problems] == [
        (2, "AccessionNumber"),
        (3, "AccessionNumber"),
    ]
    page = response.content.decode()
    assert "were leading zeros lost?" in page
    assert 'id="corrections-write"' not in page
    assert written(localaws) == []


def test_an_upload_that_is_not_a_sheet_or_too_large_is_refused_on_the_composer(
    draft: ImportDraft, client_alice: Client
) -> None:
    response = upload(client_alice, draft, "x", name="sheet.pdf")
    assert response.status_code == 422
    assert (
        "Correction sheet: “sheet.pdf” is not a .csv or .xlsx file"
        in response.content.decode()
    )
    assert response.context["refusal_place"] == "corrections"
    response = upload(client_alice, draft, b"a" * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 422
    assert "a correction sheet may be at most 5 MB" in response.content.decode()
    assert upload(client_alice, draft, GOOD).status_code == 200


def test_write_and_map_writes_the_files_maps_each_and_audits(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    review = upload(client_alice, draft, GOOD).context["review"]
    response = write_and_map(client_alice, draft, review.sha256)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "imports:draft_detail", kwargs={"pk": draft.pk}
    )
    folder = f"metadata/corrections/{review.sheet_id}"
    mapped = {
        (m.study_instance_uid, m.series_instance_uid, m.metadata_file_path)
        for m in draft.mappings.all()
    }
    assert mapped == {
        (uid, "", f"{folder}/{uid}.json")
        for uid in (ZEROS, TWIN_A, MERGE_1, MERGE_2, MERGE_3)
    }
    assert stored(localaws, f"{folder}/{TWIN_A}.json")["00100020"] == {
        "vr": "LO",
        "Value": ["PAT-A2"],
    }
    assert all(m.metadata_etag for m in draft.mappings.all())
    assert (
        AuditEvent.objects.filter(action=AuditEvent.Action.METADATA_WRITTEN).count()
        == 1
    )
    changed = AuditEvent.objects.filter(action=AuditEvent.Action.DRAFT_CHANGED).get()
    assert len(changed.details["added"]) == 5
    # The sheet is no longer held: writing it again asks for it again, and writes nothing.
    assert SHEET_SESSION_KEY not in client_alice.session
    again = write_and_map(client_alice, draft, review.sha256)
    assert again.status_code == 422
    assert "the sheet you reviewed is no longer held" in again.content.decode()


def test_a_study_the_draft_maps_to_another_file_is_refused_and_nothing_is_written(
    store: Datastore, client_alice: Client, alice: User, localaws: LocalAWSHandle
) -> None:
    localaws.put(
        f"{INPUT}fix/{TWIN_A}.json", {"00081030": {"vr": "LO", "Value": ["X"]}}
    )
    scan_prefix()
    draft = drafts.draft_assign(
        draft=_draft(store, alice),
        actor=alice,
        version=1,
        targets=[(TWIN_A, "")],
        path=f"fix/{TWIN_A}.json",
    )
    review = upload(client_alice, draft, GOOD).context["review"]
    response = write_and_map(client_alice, draft, review.sha256)
    assert response.status_code == 422
    page = response.content.decode()
    assert f"study {TWIN_A} is mapped to fix/{TWIN_A}.json" in page
    assert "Nothing was written" in page
    assert written(localaws) == []
    assert list(draft.mappings.values_list("study_instance_uid", flat=True)) == [TWIN_A]


def test_write_and_map_refuses_a_sheet_other_than_the_one_the_page_showed(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    shown = upload(client_alice, draft, GOOD).context["review"]
    upload(client_alice, draft, GOOD.replace("CT BRAIN", "CT SKULL"))  # another tab
    response = write_and_map(client_alice, draft, shown.sha256)
    assert response.status_code == 422
    assert "this is not the sheet you reviewed last" in response.content.decode()
    assert written(localaws) == []


def test_a_stale_draft_version_is_a_conflict_and_writes_nothing(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    review = upload(client_alice, draft, GOOD).context["review"]
    response = client_alice.post(
        reverse("imports:draft_corrections_write", kwargs={"pk": draft.pk}),
        {"version": draft.version + 5, "sha256": review.sha256},
    )
    assert response.status_code == 409
    assert written(localaws) == []


def test_a_viewer_cannot_upload_a_sheet(draft: ImportDraft, client_bob: Client) -> None:
    assert upload(client_bob, draft, GOOD).status_code == 403
