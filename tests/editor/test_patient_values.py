"""Patient values in the metadata editor: masked for viewers, masked for operators until an audited reveal, and a
save without a reveal keeps the file's values (it never writes the mask)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from imports.dicom.patient import mask_value
from imports.drafts import services as drafts
from imports.editor import files as editor
from imports.editor.rows import RowInput
from imports.models import AuditEvent, ImportDraft
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import (
    BUCKET,
    INPUT,
    OUTPUT,
    PREFIX,
    SERIES_A1,
    STUDY_A,
    make_datastore,
    put_json,
    scan_prefix,
    seed_prefix,
)

PATIENT_FILE = "metadata/patient.json"
PATIENT_DOCUMENT = {
    "00081030": {"vr": "LO", "Value": ["CT CHEST"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
    "00100020": {"vr": "LO", "Value": ["DEMO0001"]},
    "0020000D": {"vr": "UI", "Value": [STUDY_A]},
}


@pytest.fixture
def draft(db: None, localaws: LocalAWSHandle, alice: User) -> ImportDraft:
    seed_prefix(localaws)
    put_json(localaws, PATIENT_FILE, PATIENT_DOCUMENT)
    scan_prefix()
    return drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )


def editor_url(draft: ImportDraft) -> str:
    return reverse("imports:editor", args=[draft.pk])


def open_page(client: Client, draft: ImportDraft) -> str:
    response = client.get(editor_url(draft), {"path": PATIENT_FILE, "study": STUDY_A})
    assert response.status_code == 200
    return response.content.decode()


def s3_document(localaws: LocalAWSHandle) -> dict[str, Any]:
    answer = localaws.s3_client().get_object(Bucket=BUCKET, Key=PREFIX + PATIENT_FILE)
    document: dict[str, Any] = json.loads(answer["Body"].read())
    return document


def reveal(client: Client, draft: ImportDraft) -> Any:
    return client.post(
        reverse("imports:draft_reveal", args=[draft.pk]),
        {"back": "editor", "path": PATIENT_FILE, "study": STUDY_A},
    )


class _Form(HTMLParser):
    """What a browser would submit from the editor's form: named inputs, textareas and selected options."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._in_form = (a.get("action") or "").endswith("/editor/")
        if not self._in_form or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("checkbox", "submit"):
            self.fields.append((name, a.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields.append((name, ""))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value") or ""))

    def handle_data(self, data: str) -> None:
        if self._textarea:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


def submitted(page: str, **changes: str) -> dict[str, list[str]]:
    form = _Form()
    form.feed(page)
    data: dict[str, list[str]] = {}
    for name, value in form.fields:
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        data[name] = [value]
    return data


# --- Viewers -----------------------------------------------------------------------------------------------


def test_a_viewer_sees_the_patient_values_of_a_file_masked(
    draft: ImportDraft, client_bob: Client
) -> None:
    body = open_page(client_bob, draft)
    assert "DEMO0001" not in body
    assert "Doe" not in body
    assert "Jane" not in body
    assert 'value="D*** J***" readonly' in body
    assert 'value="D***" readonly' in body
    # What is not a patient value is shown as it is.
    assert 'value="CT CHEST"' in body
    assert "Reveal patient details" not in body


def test_a_viewer_cannot_reveal_even_with_the_draft_marked_revealed_in_the_session(
    draft: ImportDraft, client_bob: Client
) -> None:
    assert reveal(client_bob, draft).status_code == 403
    session = client_bob.session
    session["revealed_drafts"] = [draft.pk]
    session.save()
    assert "DEMO0001" not in open_page(client_bob, draft)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.PHI_REVEALED).exists()


# --- Operators: masked until an audited reveal --------------------------------------------------------------


def test_an_operator_sees_patient_values_only_after_an_audited_reveal(
    draft: ImportDraft, client_alice: Client
) -> None:
    before = open_page(client_alice, draft)
    assert "DEMO0001" not in before
    assert "Jane" not in before
    assert "Reveal patient details" in before
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.PHI_REVEALED).exists()

    response = reveal(client_alice, draft)
    assert response.status_code == 302
    assert response["Location"].startswith(editor_url(draft) + "?")
    event = AuditEvent.objects.get(action=AuditEvent.Action.PHI_REVEALED)
    assert event.summary == (
        f"Revealed patient names and IDs in the metadata editor of import draft {draft.pk}"
    )
    after = client_alice.get(response["Location"]).content.decode()
    assert 'name="rows-3-value" value="DEMO0001"' in after
    assert 'name="rows-2-pn-0-0" value="Doe"' in after
    assert 'name="rows-2-pn-0-1" value="Jane"' in after
    assert "Mask patient details" in after

    client_alice.post(
        reverse("imports:draft_reveal", args=[draft.pk]),
        {"back": "editor", "path": PATIENT_FILE, "study": STUDY_A, "hide": "1"},
    )
    assert "DEMO0001" not in open_page(client_alice, draft)


def test_a_save_without_a_reveal_keeps_the_files_patient_values(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    page = open_page(client_alice, draft)
    data = submitted(
        page,
        **{"rows-1-value": "CT CHEST W CONTRAST", "replace": "on", "action": "save"},
    )
    assert "DEMO0001" not in json.dumps(data)
    response = client_alice.post(editor_url(draft), data)
    assert response.status_code == 302, response.content.decode()
    document = s3_document(localaws)
    assert document["00081030"]["Value"] == ["CT CHEST W CONTRAST"]
    assert document["00100010"] == PATIENT_DOCUMENT["00100010"]
    assert document["00100020"] == PATIENT_DOCUMENT["00100020"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.METADATA_WRITTEN)
    assert event.details["tags_changed"] == ["StudyDescription (0008,1030)"]


def test_a_masked_row_never_writes_what_was_posted_as_its_value(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    # A client that sends the mask (or anything) as the value of a masked row: the file's value is kept.
    data = submitted(
        open_page(client_alice, draft),
        **{"rows-3-value": "D***", "replace": "on", "action": "save"},
    )
    assert data["rows-3-kept"] == ["1"]
    assert client_alice.post(editor_url(draft), data).status_code == 302
    assert s3_document(localaws)["00100020"]["Value"] == ["DEMO0001"]


def test_after_a_reveal_an_operator_saves_a_changed_patient_value(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    reveal(client_alice, draft)
    data = submitted(
        open_page(client_alice, draft),
        **{"rows-3-value": "DEMO0002", "replace": "on", "action": "save"},
    )
    assert "rows-3-kept" not in data
    assert client_alice.post(editor_url(draft), data).status_code == 302
    document = s3_document(localaws)
    assert document["00100020"]["Value"] == ["DEMO0002"]
    assert document["00100010"] == PATIENT_DOCUMENT["00100010"]


def test_a_file_changed_since_it_was_opened_masked_is_a_conflict_shown_masked(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    data = submitted(
        open_page(client_alice, draft), **{"replace": "on", "action": "save"}
    )
    newer = {**PATIENT_DOCUMENT, "00100020": {"vr": "LO", "Value": ["DEMO0003"]}}
    put_json(localaws, PATIENT_FILE, newer)
    response = client_alice.post(editor_url(draft), data)
    assert response.status_code == 409
    body = response.content.decode()
    assert "changed in S3 since you opened it" in body
    assert "DEMO0003" not in body
    assert "DEMO0001" not in body
    assert s3_document(localaws) == newer


def test_rows_masked_masks_the_patient_group_and_person_names_only() -> None:
    rows = [
        RowInput(tag="00081030", vr="LO", value="CT CHEST"),
        RowInput(tag="PatientID", value="DEMO0001"),
        RowInput(tag="OtherPatientIDs", value="ABCD1\nEFGH2"),
        RowInput(tag="ReferringPhysicianName", pn=("Roe", "Rick", *[""] * 13)),
    ]
    masked = editor.rows_masked(rows)
    assert masked[0] == rows[0]
    assert masked[1] == RowInput(tag="PatientID", kept=True, shown="D***")
    assert masked[2].shown == "A***\nE***"
    assert masked[3] == RowInput(
        tag="ReferringPhysicianName", kept=True, shown="R*** R***"
    )


def test_a_reveal_from_the_fix_panel_comes_back_to_it_prefilled(
    db: None, localaws: LocalAWSHandle, alice: User, client_alice: Client
) -> None:
    seed_prefix(localaws)
    # A third instance spells the patient's name another way: the scan flags PatientName on the study.
    localaws.put(
        f"{INPUT}{SERIES_A1}/3.dcm",
        dicom_bytes(
            study=STUDY_A,
            series=SERIES_A1,
            sop=f"{SERIES_A1}.3",
            SeriesNumber=1,
            InstanceNumber=3,
            StudyDescription="CT Chest w/ contrast",
            SeriesDescription="series 1",
            PatientName="DOE^JANE^X",
            PatientID="PAT-1",
        ),
    )
    scan_prefix()
    draft = drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )
    fix = {"study": STUDY_A, "fix": "PatientName"}
    masked = client_alice.get(editor_url(draft), fix).content.decode()
    assert "Jane" not in masked
    assert "JANE" not in masked
    assert '<input type="hidden" name="fix" value="PatientName">' in masked
    response = client_alice.post(
        reverse("imports:draft_reveal", args=[draft.pk]),
        {"back": "editor", **fix, "path": f"metadata/{STUDY_A}.json", "series": ""},
    )
    assert "fix=PatientName" in response["Location"]
    revealed = client_alice.get(response["Location"]).content.decode()
    assert (
        "The file below sets PatientName to the value most instances carry" in revealed
    )
    assert 'value="Doe"' in revealed
    assert 'value="Jane"' in revealed


def test_masked_rows_stay_masked_through_check_and_add_then_save_keeps_them(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    page = open_page(client_alice, draft)
    for action in ("check", "add"):
        response = client_alice.post(editor_url(draft), submitted(page, action=action))
        assert response.status_code == 200
        page = response.content.decode()
        assert "DEMO0001" not in page
        assert 'name="rows-3-kept" value="1"' in page
        assert 'value="D***" readonly' in page
    data = submitted(page, **{"replace": "on", "action": "save"})
    assert client_alice.post(editor_url(draft), data).status_code == 302
    assert s3_document(localaws) == PATIENT_DOCUMENT


def test_masked_values_are_never_kept_from_a_file_the_editor_cannot_show(
    draft: ImportDraft, client_alice: Client, localaws: LocalAWSHandle
) -> None:
    # The page shows U+FFFD for the NUL; keeping "the file's value" would write that instead.
    hostile = json.dumps(PATIENT_DOCUMENT).replace("DEMO0001", "DEMO\\u00000001")
    put_json(localaws, PATIENT_FILE, hostile)
    page = open_page(client_alice, draft)
    assert 'id="read-only"' in page
    data = submitted(page, **{"replace": "on", "action": "save"})
    assert data["rows-3-kept"] == ["1"]
    response = client_alice.post(editor_url(draft), data)
    assert response.status_code in (400, 409, 422)
    assert "Masked patient values cannot be kept from it" in response.content.decode()
    assert s3_document(localaws)["00100020"]["Value"] == ["DEMO\x000001"]


# --- What the instances hold now ----------------------------------------------------------------------------


def _now_lines(page: str) -> dict[str, str]:
    """Row number -> its "Now in the scanned instances" line."""
    lines = {}
    for part in page.split('<div id="row-')[1:]:
        number, _, rest = part.partition("-check")
        if '<p class="muted now">' in rest.split("</div>", 1)[0]:
            line = rest.split('<p class="muted now">', 1)[1].split("</p>", 1)[0]
            lines[number] = line
    return lines


def test_each_row_shows_what_the_instances_hold_now_with_patient_values_masked(
    draft: ImportDraft, client_alice: Client
) -> None:
    # The file's rows: 1 StudyDescription, 2 PatientName, 3 PatientID, 4 StudyInstanceUID (not indexed).
    lines = _now_lines(open_page(client_alice, draft))
    assert set(lines) == {"1", "2", "3"}
    # The two series disagree (two instances each): the first ranked value, and how many others.
    assert lines["1"] in (
        f"Now in the scanned instances: “{value}”, and 1 other value"
        for value in ("CT Chest w/ contrast", "CT CHEST W CONTRAST")
    )
    assert lines["3"] == f"Now in the scanned instances: “{mask_value('PAT-1')}”"
    assert "PAT-1" not in lines["3"]
    assert "Jane" not in lines["2"]

    reveal(client_alice, draft)
    revealed = _now_lines(open_page(client_alice, draft))
    assert revealed["3"] == "Now in the scanned instances: “PAT-1”"
    assert revealed["2"] == "Now in the scanned instances: “Doe^Jane”"


def test_a_row_typed_in_shows_what_the_instances_hold_now(
    draft: ImportDraft, client_alice: Client
) -> None:
    url = reverse("imports:editor_row", args=[draft.pk])
    for tag, expected in (
        ("Modality", "Now in the scanned instances: “CT”"),
        ("BodyPartExamined", None),  # the scan does not index it: no line
    ):
        response = client_alice.post(
            url,
            {
                "version": draft.version,
                "study": STUDY_A,
                "series": SERIES_A1,
                "path": "metadata/a1.json",
                "row": ["1"],
                "rows-1-tag": tag,
                "check_row": "1",
                "part": "row",
            },
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200
        assert _now_lines(response.content.decode()).get("1") == expected
