"""The metadata editor: rows to DICOM JSON and back, conditional writes to localaws's S3, mapping, audit, pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from imports.dicom.json_model import validate_dicom_json
from imports.drafts import services as drafts
from imports.editor import files as editor
from imports.editor.rows import RowInput, row_check, rows_check, tag_parse, tag_search
from imports.mappings.rules import Mapping
from imports.models import AuditEvent, ImportDraft, ObjectHeader, ScanObject
from imports.scanning.lookup import prefix_index, scan_is_current
from localaws.testing import LocalAWSHandle
from tests.builders import (
    BUCKET,
    INPUT,
    OUTPUT,
    PREFIX,
    SERIES_A2,
    STUDY_A,
    STUDY_FILE,
    make_datastore,
    scan_prefix,
    seed_prefix,
)


@pytest.fixture
def world(db: None, localaws: LocalAWSHandle) -> LocalAWSHandle:
    seed_prefix(localaws)
    return localaws


@pytest.fixture
def draft(world: LocalAWSHandle, alice: User) -> ImportDraft:
    scan_prefix()
    return drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )


def s3_json(localaws: LocalAWSHandle, path: str) -> tuple[dict[str, Any], str]:
    answer = localaws.s3_client().get_object(Bucket=BUCKET, Key=PREFIX + path)
    return json.loads(answer["Body"].read()), answer["ETag"].strip('"')


def s3_keys(localaws: LocalAWSHandle) -> set[str]:
    listing = localaws.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return {o["Key"][len(PREFIX) :] for o in listing.get("Contents", [])}


def save(
    draft: ImportDraft, alice: User, rows: list[RowInput], **kwargs: Any
) -> editor.Saved:
    draft.refresh_from_db()
    params: dict[str, Any] = {
        "target": editor.Target(STUDY_A),
        "path": "metadata/new.json",
        "loaded_etag": "",
        "replace": False,
    }
    params.update(kwargs)
    return editor.editor_save(
        draft=draft, actor=alice, version=draft.version, rows=rows, **params
    )


# --- Round trip: every VR the editor writes --------------------------------------------------------------

# (keyword, VR, what is typed, the value pydicom reads back)
ROUND_TRIP = [
    ("RetrieveAETitle", "AE", "PACS_ONE\nPACS_TWO", ["PACS_ONE", "PACS_TWO"]),
    ("PatientAge", "AS", "045Y", "045Y"),
    ("FrameIncrementPointer", "AT", "(0018,1063)\nFrameTime", [0x00181063, 0x00181063]),
    ("BodyPartExamined", "CS", "CHEST", "CHEST"),
    ("StudyDate", "DA", "20240131", "20240131"),
    ("PatientWeight", "DS", "72.5", 72.5),
    (
        "InstanceCoercionDateTime",
        "DT",
        "20240131101500.5+0100",
        "20240131101500.5+0100",
    ),
    ("RecommendedDisplayFrameRateInFloat", "FL", "29.5", 29.5),
    ("ImagedNucleus", "SH", "1H", "1H"),
    ("DiffusionBValue", "FD", "-1e-3", -0.001),
    ("StudyID", "SH", "S-42", "S-42"),
    ("InstanceNumber", "IS", "7", 7),
    (
        "StudyDescription",
        "LO",
        "CT CHEST <b>W</b> CONTRAST",
        "CT CHEST <b>W</b> CONTRAST",
    ),
    ("AdditionalPatientHistory", "LT", "line one\r\nline two", "line one\r\nline two"),
    ("ReferringPhysicianName", "PN", "", "Doe^John^^Dr"),
    ("OtherPatientNames", "PN", "Doe^J\nRoe^R=ロウ", ["Doe^J", "Roe^R=ロウ"]),
    ("RequestedContrastAgent", "LO", "Gadolinium", "Gadolinium"),
    ("ReferencePixelX0", "SL", "-12", -12),
    ("TagAngleSecondAxis", "SS", "-3", -3),
    ("DerivationDescription", "ST", "resampled", "resampled"),
    ("SelectorSVValue", "SV", "-9007199254740993", -9007199254740993),
    ("StudyTime", "TM", "101500.123", "101500.123"),
    ("StrainDescription", "UC", "long text", "long text"),
    ("StudyInstanceUID", "UI", STUDY_A, STUDY_A),
    ("SimpleFrameList", "UL", "1\n2\n4294967295", [1, 2, 4294967295]),
    (
        "RetrieveURL",
        "UR",
        "https://pacs.example/studies/1",
        "https://pacs.example/studies/1",
    ),
    ("Rows", "US", "512", 512),
    ("PixelDataProviderURL", "UR", "https://x.example/p", "https://x.example/p"),
    ("DerivationCodeSequence", "SQ", None, None),  # refused, see below
    ("SelectorUVValue", "UV", "18446744073709551615", 18446744073709551615),
    ("ClinicalTrialProtocolName", "LO", "Protocol Ω", "Protocol Ω"),
    ("ImageComments", "LT", "ünïcode", "ünïcode"),
    ("TextValue", "UT", "x" * 5000, "x" * 5000),
]


def test_every_vr_the_editor_writes_round_trips_through_s3_and_pydicom(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    rows, expected = [], {}
    for keyword, vr, typed, value in ROUND_TRIP:
        assert dictionary_VR(keyword) == vr, keyword
        if typed is None:  # SQ: refused, see the next test
            continue
        if keyword == "ReferringPhysicianName":
            rows.append(
                RowInput(tag=keyword, pn=("Doe", "John", "", "Dr", "") + ("",) * 10)
            )
        else:
            rows.append(RowInput(tag=keyword, value=typed))
        expected[keyword] = value
    written_vrs = {vr for _, vr, _, _ in ROUND_TRIP if vr != "SQ"}
    assert written_vrs == {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
        "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US", "UT", "UV",
    }  # fmt: skip
    saved = save(draft, alice, rows)

    document, etag = s3_json(world, "metadata/new.json")
    assert etag == saved.etag
    assert list(document) == sorted(document)  # PS3.18 F.2: keys in ascending order
    assert validate_dicom_json(json.dumps(document).encode()).is_valid
    dataset = Dataset.from_json(document)
    for keyword, value in expected.items():
        got = dataset[keyword].value
        if isinstance(value, list):
            got = list(got)
        if keyword in ("ReferringPhysicianName",):
            got = str(got)
        if keyword == "OtherPatientNames":
            got = [str(name) for name in got]
        assert got == value, keyword


def test_a_sequence_row_is_refused_with_the_reason() -> None:
    check = row_check(1, RowInput(tag="DerivationCodeSequence", value="x"))
    assert check.attribute is None
    assert check.errors == [
        "DerivationCodeSequence (0008,9215): sequences (SQ) cannot be written in the editor; "
        "they are out of its scope"
    ]


def test_a_file_with_a_sequence_or_bulk_data_opens_read_only(
    draft: ImportDraft, world: LocalAWSHandle
) -> None:
    world.put(
        f"{INPUT}metadata/seq.json",
        {
            "00089215": {"vr": "SQ", "Value": [{}]},
            "00081030": {"vr": "LO", "Value": ["X"]},
        },
    )
    world.put(
        f"{INPUT}metadata/bulk.json",
        {"00101010": {"vr": "AS", "BulkDataURI": "http://x"}},
    )
    sequence = editor.editor_open(draft=draft, path="metadata/seq.json")
    assert sequence.read_only_reason == (
        "DerivationCodeSequence (0008,9215): sequences (SQ) cannot be written in the editor; "
        "they are out of its scope; the file opens read-only."
    )
    bulk = editor.editor_open(draft=draft, path="metadata/bulk.json")
    assert bulk.read_only_reason == (
        "PatientAge (0010,1010) holds its value as BulkDataURI, which the editor cannot show; "
        "the file opens read-only."
    )
    plain = editor.editor_open(draft=draft, path=STUDY_FILE)
    assert plain.read_only_reason == ""
    assert [r.tag for r in plain.rows] == ["00081030", "0020000D"]


# Values no page and no database can hold: the file opens read-only with the reason, never a 500.
UNSHOWABLE = {
    "NUL in a value": (
        '{"00081030": {"vr": "LO", "Value": ["CT\\u0000HEAD"]}}',
        "U+0000",
    ),
    "lone surrogate in a value": (
        '{"00081030": {"vr": "LO", "Value": ["CT \\ud800"]}}',
        "lone surrogate (U+D800)",
    ),
    "lone surrogate in a key": (
        '{"\\ud800": {"vr": "LO", "Value": ["CT"]}, "00081030": {"vr": "LO", "Value": ["CT"]}}',
        "key 1 is not a valid key",
    ),
    "NUL in a key": ('{"0008\\u00001030": {"vr": "LO", "Value": ["CT"]}}', "key 1"),
    "1e999 under FD": (
        '{"00189087": {"vr": "FD", "Value": [1e999]}}',
        "beyond the range of a double",
    ),
    "-1e999 under DS": (
        '{"00180050": {"vr": "DS", "Value": [-1e999]}}',
        "beyond the range of a double",
    ),
}


@pytest.mark.parametrize(("text", "reason"), UNSHOWABLE.values(), ids=UNSHOWABLE.keys())
def test_a_file_no_page_can_show_opens_read_only_with_its_reason(
    draft: ImportDraft,
    client_alice: Client,
    world: LocalAWSHandle,
    text: str,
    reason: str,
) -> None:
    world.put(f"{INPUT}metadata/hostile.json", text)
    opened = editor.editor_open(draft=draft, path="metadata/hostile.json")
    assert reason in opened.read_only_reason
    assert opened.read_only_reason.endswith("the file opens read-only.")
    response = client_alice.get(editor_url(draft), {"path": "metadata/hostile.json"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="read-only"' in body
    assert reason in body
    assert "Save and map" not in body


def test_a_file_with_a_surrogate_pair_is_one_character_and_opens_for_editing(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    world.put(
        f"{INPUT}metadata/emoji.json",
        '{"00081030": {"vr": "LO", "Value": ["CT \\ud83d\\ude00"]}}',
    )
    opened = editor.editor_open(draft=draft, path="metadata/emoji.json")
    assert opened.read_only_reason == ""
    assert [r.value for r in opened.rows] == ["CT \U0001f600"]
    draft.mappings.create(
        study_instance_uid=STUDY_A,
        series_instance_uid="",
        metadata_file_path="metadata/emoji.json",
    )
    response = client_alice.get(editor_url(draft), {"path": "metadata/emoji.json"})
    assert response.status_code == 200
    assert "Save and map" in response.content.decode()


# --- The overwrite guard ---------------------------------------------------------------------------------


def test_a_new_file_is_written_only_where_no_object_exists(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    world.put(
        f"{INPUT}metadata/new.json", b'{"00081030": {"vr": "LO", "Value": ["THEIRS"]}}'
    )
    with pytest.raises(editor.EditorConflict) as conflict:
        save(draft, alice, [RowInput(tag="StudyDescription", value="MINE")])
    document, etag = s3_json(world, "metadata/new.json")
    assert document["00081030"]["Value"] == ["THEIRS"]
    assert conflict.value.current.etag == etag
    assert conflict.value.current.rows == [
        RowInput(tag="00081030", vr="LO", value="THEIRS")
    ]
    assert not AuditEvent.objects.filter(
        action=AuditEvent.Action.METADATA_WRITTEN
    ).exists()


def test_an_existing_file_is_replaced_when_its_etag_is_unchanged(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    opened = editor.editor_open(draft=draft, path=STUDY_FILE)
    rows = [*opened.rows[1:], RowInput(tag="00081030", value="CT CHEST")]
    with pytest.raises(editor.EditorRefused, match="tick “Replace the existing file”"):
        save(draft, alice, rows, path=STUDY_FILE, loaded_etag=opened.etag)
    saved = save(
        draft, alice, rows, path=STUDY_FILE, loaded_etag=opened.etag, replace=True
    )
    document, etag = s3_json(world, STUDY_FILE)
    assert document["00081030"]["Value"] == ["CT CHEST"]
    assert etag == saved.etag != opened.etag
    event = AuditEvent.objects.get(action=AuditEvent.Action.METADATA_WRITTEN)
    assert event.details["tags_changed"] == ["StudyDescription (0008,1030)"]
    assert event.details["previous_etag"] == opened.etag
    assert event.details["etag"] == saved.etag
    assert event.details["size"] == saved.size
    assert "CT CHEST" not in json.dumps(event.details) + event.summary


def test_an_existing_file_changed_since_it_was_opened_is_not_overwritten(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    opened = editor.editor_open(draft=draft, path=STUDY_FILE)
    world.put(f"{INPUT}{STUDY_FILE}", {"00081030": {"vr": "LO", "Value": ["NEWER"]}})
    with pytest.raises(editor.EditorConflict) as conflict:
        save(
            draft,
            alice,
            [RowInput(tag="StudyDescription", value="MINE")],
            path=STUDY_FILE,
            loaded_etag=opened.etag,
            replace=True,
        )
    document, etag = s3_json(world, STUDY_FILE)
    assert document == {"00081030": {"vr": "LO", "Value": ["NEWER"]}}
    # The newer version is offered: its ETag and its rows.
    assert conflict.value.current.etag == etag != opened.etag
    assert conflict.value.current.rows == [
        RowInput(tag="00081030", vr="LO", value="NEWER")
    ]


# --- Saving maps the file, and the index knows it -----------------------------------------------------------


def test_a_saved_file_is_mapped_at_once_and_validation_accepts_it(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    saved = save(
        draft,
        alice,
        [RowInput(tag="SeriesDescription", value="T2 AXIAL")],
        target=editor.Target(STUDY_A, SERIES_A2),
        path=f"metadata/{SERIES_A2}.json",
    )
    mapping = saved.draft.mappings.get(series_instance_uid=SERIES_A2)
    assert (mapping.metadata_file_path, mapping.metadata_etag) == (
        f"metadata/{SERIES_A2}.json",
        saved.etag,
    )
    assert saved.draft.version == draft.version + 1
    scan = saved.draft.scan
    assert scan is not None
    index = prefix_index(scan=scan)
    assert index.json_files[f"metadata/{SERIES_A2}.json"].valid
    # The scan still describes the prefix exactly: confirming the import does not ask for a rescan.
    assert scan_is_current(scan=scan)
    problems = drafts.draft_validate(draft=saved.draft)
    assert [p for p in problems if p.row == 1] == []
    header = ObjectHeader.objects.get(key=f"{PREFIX}metadata/{SERIES_A2}.json")
    assert ScanObject.objects.filter(scan=scan, header=header).exists()


def test_replacing_a_file_replaces_its_version_in_the_index(
    draft: ImportDraft, alice: User, world: LocalAWSHandle
) -> None:
    opened = editor.editor_open(draft=draft, path=STUDY_FILE)
    scan = draft.scan
    assert scan is not None
    before = scan.objects_listed
    save(
        draft,
        alice,
        [RowInput(tag="StudyDescription", value="X")],
        path=STUDY_FILE,
        loaded_etag=opened.etag,
        replace=True,
    )
    scan.refresh_from_db()
    assert scan.objects_listed == before
    assert (
        ObjectHeader.objects.of_scan(scan).filter(key=PREFIX + STUDY_FILE).count() == 1
    )
    assert scan_is_current(scan=scan)


# --- Tags and keywords -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "0008103E",
        "0008103e",
        "(0008,103E)",
        "0008,103E",
        " ( 0008 , 103e ) ",
        "SeriesDescription",
    ],
)
def test_a_tag_is_entered_as_a_tag_or_a_keyword(typed: str) -> None:
    assert tag_parse(typed) == (0x0008103E, "")


def test_autocomplete_answers_tag_keyword_vr_name_and_level(
    client_alice: Client,
) -> None:
    found = tag_search("SeriesDesc")
    assert found[0].keyword == "SeriesDescription"
    assert (found[0].pair, found[0].vr, found[0].name, found[0].level) == (
        "(0008,103E)",
        "LO",
        "Series Description",
        "series",
    )
    assert tag_search("0010001")[0].keyword == "PatientName"
    response = client_alice.get(
        reverse("imports:editor_tags"),
        {"q": "PatientNam"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert (
        '<option value="PatientName">(0010,0010) PN · Patient&#x27;s Name · patient</option>'
        in body
    )
    page = client_alice.get(reverse("imports:editor_tags"), {"q": "StudyDate"})
    assert (
        "<td>StudyDate</td><td>DA</td><td>1</td><td>Study Date</td><td>study</td>"
        in page.content.decode()
    )


# --- Level warnings --------------------------------------------------------------------------------------


def test_rows_get_the_composers_level_warnings() -> None:
    series_file = Mapping(STUDY_A, SERIES_A2, "metadata/s.json")
    study_file = Mapping(STUDY_A, "", "metadata/t.json")
    name = RowInput(tag="PatientName", pn=("Doe", "Jane") + ("",) * 13)
    assert row_check(1, name, target=series_file).warnings == [
        "the metadata file of a series-level mapping sets patient attributes PatientName (0010,0010); "
        "the series of one study could then disagree, so set them in a study-level mapping"
    ]
    assert row_check(1, name, target=study_file).warnings == []
    instance = RowInput(tag="InstanceNumber", value="1")
    assert row_check(1, instance, target=study_file).warnings == [
        "the metadata file sets instance-level attributes InstanceNumber (0020,0013), which would give every "
        "instance it applies to the same value; leave them out"
    ]
    assert (
        row_check(
            1, RowInput(tag="SeriesDescription", value="x"), target=series_file
        ).warnings
        == []
    )


# --- The pages -------------------------------------------------------------------------------------------


def form_data(
    draft: ImportDraft, rows: list[dict[str, str]], **fields: str
) -> dict[str, Any]:
    draft.refresh_from_db()
    data: dict[str, Any] = {
        "version": str(draft.version),
        "study": STUDY_A,
        "series": "",
        "path": "metadata/page.json",
        "loaded_etag": "",
        "action": "save",
        "row": [str(n) for n in range(1, len(rows) + 1)],
    }
    for n, row in enumerate(rows, start=1):
        for name, value in row.items():
            data[f"rows-{n}-{name}"] = value
    data.update(fields)
    return data


def editor_url(draft: ImportDraft) -> str:
    return reverse("imports:editor", args=[draft.pk])


def test_the_editor_opens_on_the_default_key_for_a_study(
    draft: ImportDraft, client_alice: Client
) -> None:
    response = client_alice.get(editor_url(draft), {"study": STUDY_A})
    assert response.status_code == 200
    body = response.content.decode()
    assert f'name="path" value="metadata/{STUDY_A}.json"' in body
    assert 'name="rows-1-tag" value=""' in body
    assert "Save and map" in body
    series = client_alice.get(
        editor_url(draft), {"study": STUDY_A, "series": SERIES_A2}
    )
    assert f'value="metadata/{SERIES_A2}.json"' in series.content.decode()


def test_without_javascript_a_post_checks_every_row_and_saves_nothing_while_one_is_invalid(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    keys = s3_keys(world)
    response = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [
                {"tag": "StudyDate", "value": "2026-01-01"},
                {"tag": "StudyDescription", "value": "OK"},
            ],
        ),
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "Nothing was written: 1 row has errors; fix them first." in body
    assert "StudyDate (0008,0020): value is not a DICOM date; DA is YYYYMMDD" in body
    assert s3_keys(world) == keys
    # The form comes back as typed, so the user fixes the row instead of starting again.
    assert 'name="rows-1-value" value="2026-01-01"' in body


def test_a_post_saves_maps_and_returns_to_the_composer(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    response = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [
                {"tag": "00100010", "pn-0-0": "Doe", "pn-0-1": "Jane"},
                {"tag": "StudyDescription", "value": "X"},
            ],
        ),
    )
    assert response.status_code == 302
    assert response["Location"].endswith(f"/drafts/{draft.pk}/#mappings")
    document, etag = s3_json(world, "metadata/page.json")
    assert document["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert (
        draft.mappings.get(
            study_instance_uid=STUDY_A, series_instance_uid=""
        ).metadata_etag
        == etag
    )
    event = AuditEvent.objects.get(action=AuditEvent.Action.METADATA_WRITTEN)
    assert event.details["tags_changed"] == [
        "StudyDescription (0008,1030)",
        "PatientName (0010,0010)",
    ]
    assert "Doe" not in event.summary + json.dumps(event.details)


def test_htmx_checks_one_row_as_it_is_typed(
    draft: ImportDraft, client_alice: Client
) -> None:
    url = reverse("imports:editor_row", args=[draft.pk])
    data = form_data(
        draft,
        [{"tag": "StudyInstanceUID", "value": "1.2.03"}, {"tag": "Foo", "value": ""}],
        check_row="1",
        part="check",
    )
    response = client_alice.post(url, data, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="row-1-check"')
    assert "a UID component has a leading zero" in body
    assert 'id="editor-status"' in body
    assert 'hx-swap-oob="true"' in body
    # A changed tag answers the whole row, so the value widget follows the VR, with dictionary suggestions.
    data = form_data(draft, [{"tag": "PatientNa"}], check_row="1", part="row")
    row = client_alice.post(url, data, headers={"HX-Request": "true"}).content.decode()
    assert '<fieldset id="row-1"' in row
    assert "&#x27;PatientNa&#x27; is not a keyword of the DICOM dictionary" in row
    assert '<option value="PatientName">' in row
    data = form_data(draft, [{"tag": "PatientName"}], check_row="1", part="row")
    row = client_alice.post(url, data, headers={"HX-Request": "true"}).content.decode()
    assert 'name="rows-1-pn-0-0"' in row
    assert 'name="rows-1-pn-0-4"' in row


def test_a_viewer_sees_files_read_only_and_cannot_write(
    draft: ImportDraft, client_bob: Client, world: LocalAWSHandle
) -> None:
    response = client_bob.get(editor_url(draft), {"path": STUDY_FILE})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Save and map" not in body
    assert (
        'name="rows-1-tag" value="00081030" list="tag-options" autocomplete="off" spellcheck="false" placeholder="SeriesDescription or 0008103E" readonly'
        in body
    )
    keys = s3_keys(world)
    denied = client_bob.post(
        editor_url(draft), form_data(draft, [{"tag": "StudyDescription", "value": "X"}])
    )
    assert denied.status_code == 403
    assert s3_keys(world) == keys


# --- Bad input: a precise message and nothing written ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.json", "has a '.' or '..' segment"),
        (
            "metadata/%2e%2e/%2e%2e/x.json",
            "has a '.' or '..' segment (percent-encoded ones included)",
        ),
        ("/metadata/x.json", "starts with '/'"),
        ("metadata\\x.json", "contains a backslash"),
        (
            "metadata/x\x00.json",
            "File (relative to the input prefix): Null characters are not allowed",
        ),
        ("metadata/é.json", "contains U+00E9"),
    ],
)
def test_a_key_outside_the_prefix_is_refused_in_any_spelling(
    draft: ImportDraft,
    client_alice: Client,
    world: LocalAWSHandle,
    path: str,
    message: str,
) -> None:
    keys = s3_keys(world)
    response = client_alice.post(
        editor_url(draft),
        form_data(draft, [{"tag": "StudyDescription", "value": "X"}], path=path),
    )
    assert response.status_code == 422
    assert message in response.content.decode().replace("&#x27;", "'")
    assert s3_keys(world) == keys
    assert not AuditEvent.objects.filter(
        action=AuditEvent.Action.METADATA_WRITTEN
    ).exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (RowInput(tag="0008103", value="x"), "Tag: a tag is 8 hex digits (0008103E)"),
        (
            RowInput(tag="SeriesDescriptio", value="x"),
            "'SeriesDescriptio' is not a keyword of the DICOM dictionary",
        ),
        (
            RowInput(tag="00091001", value="x"),
            "(0009,1001) is a private tag, so it has no VR to go by: choose its VR",
        ),
        (
            RowInput(tag="00080000", value="1"),
            "is a group length; group length elements (gggg0000) must not be included",
        ),
        (
            RowInput(tag="TransferSyntaxUID", value="1.2"),
            "is file meta information (group 0002)",
        ),
        (RowInput(tag="PixelData", value="1"), "PixelData (7FE0,0010) is pixel data"),
        (
            RowInput(tag="StudyDescription", value="x" * 65),
            "LO is at most 64 characters; this value has 65",
        ),
        (
            RowInput(tag="StudyDate", value="20240231"),
            "value is not a calendar date (DA is YYYYMMDD)",
        ),
        (
            RowInput(tag="StudyTime", value="25"),
            "TM is HH, HHMM, HHMMSS or HHMMSS.FFFFFF",
        ),
        (
            RowInput(tag="AcquisitionDateTime", value="2024-01-01T10:00"),
            "DT is YYYYMMDDHHMMSS.FFFFFF",
        ),
        (
            RowInput(tag="StudyInstanceUID", value="1.2.03"),
            "a UID component has a leading zero",
        ),
        (
            RowInput(tag="ImageType", value="A\n" * 10_000),
            "10,000 values; a row holds at most 256",
        ),
        (
            RowInput(tag="Rows", value="70000"),
            "value is out of range for US (0 to 65535)",
        ),
        (RowInput(tag="Rows", value="5.5"), "US takes a whole number"),
        (RowInput(tag="PatientWeight", value="nan"), "DS takes a finite number"),
    ],
)
def test_a_bad_row_gets_a_precise_message(row: RowInput, message: str) -> None:
    check = row_check(1, row)
    assert check.attribute is None
    assert any(message in error for error in check.errors), check.errors
    # No value is quoted back (a UID's offending component is the one exception, as in the composer).
    if len(row.value) >= 5 and row.tag != "StudyInstanceUID":
        assert not any(row.value.strip() in error for error in check.errors)


def test_the_same_attribute_twice_is_refused_on_the_second_row() -> None:
    checks = rows_check(
        [
            RowInput(tag="StudyDescription", value="a"),
            RowInput(tag="00081030", value="b"),
        ]
    )
    assert checks[0].errors == []
    assert checks[1].errors == [
        "StudyDescription (0008,1030) is already row 1; give each attribute one row"
    ]


def test_500_rows_are_refused_and_nothing_is_written(
    draft: ImportDraft, alice: User, client_alice: Client, world: LocalAWSHandle
) -> None:
    rows = [
        RowInput(tag=f"0009{n:04X}", vr="LO", value="x")
        for n in range(0x1000, 0x1000 + 500)
    ]
    with pytest.raises(
        editor.EditorRefused,
        match="500 rows; a metadata file written here holds at most 200",
    ):
        save(draft, alice, rows)
    keys = s3_keys(world)
    data = form_data(
        draft,
        [
            {"tag": f"0009{n:04X}", "vr": "LO", "value": "x"}
            for n in range(0x1000, 0x1000 + 500)
        ],
    )
    response = client_alice.post(editor_url(draft), data)
    assert response.status_code == 400
    assert (
        "The form sent too many fields: a file written here holds at most 200 attributes"
        in response.content.decode()
    )
    assert s3_keys(world) == keys


def test_a_2_mb_value_is_refused_and_nothing_is_written(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    keys = s3_keys(world)
    big = "x" * (2 * 1024 * 1024)
    response = client_alice.post(
        editor_url(draft), form_data(draft, [{"tag": "TextValue", "value": big}])
    )
    assert response.status_code == 422
    assert (
        "file is 2.1 MB; metadata files are read up to 1.05 MB only"
        in response.content.decode()
    )
    response = client_alice.post(
        editor_url(draft), form_data(draft, [{"tag": "StudyDescription", "value": big}])
    )
    assert (
        "LO is at most 64 characters; this value has 2,097,152"
        in response.content.decode().replace("2097152", "2,097,152")
    )
    assert s3_keys(world) == keys


def test_markup_in_a_value_is_stored_as_text_and_rendered_escaped(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    markup = '<script>alert("x")</script>'
    response = client_alice.post(
        editor_url(draft), form_data(draft, [{"tag": "StudyComments", "value": markup}])
    )
    assert response.status_code == 302
    document, _ = s3_json(world, "metadata/page.json")
    assert document["00324000"]["Value"] == [markup]
    page = client_alice.get(
        editor_url(draft), {"path": "metadata/page.json"}
    ).content.decode()
    assert markup not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_the_object_changed_between_load_and_save_is_refused_with_the_newer_version_offered(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    opened = editor.editor_open(draft=draft, path=STUDY_FILE)
    world.put(f"{INPUT}{STUDY_FILE}", {"00081030": {"vr": "LO", "Value": ["NEWER"]}})
    response = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [{"tag": "StudyDescription", "value": "MINE"}],
            path=STUDY_FILE,
            loaded_etag=opened.etag,
            replace="on",
        ),
    )
    assert response.status_code == 409
    body = response.content.decode()
    assert "changed in S3 since you opened it" in body
    assert "NEWER" in body  # the newer version's rows
    _, etag = s3_json(world, STUDY_FILE)
    assert f'name="loaded_etag" value="{etag}"' in body
    assert 'name="rows-1-value" value="MINE"' in body  # the user's rows are kept


# --- Fix inconsistency, on the demo data ------------------------------------------------------------------


def test_fix_on_the_demo_study_unifies_study_description_through_to_the_preview(
    localaws: LocalAWSHandle, alice: User, client_alice: Client
) -> None:
    import io

    from django.core.management import call_command

    from imports.models import Datastore, ScanSeries, ScanStudy
    from imports.scanning import control, run
    from localaws import democorpus

    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    run.scan_run(scan_id=scan.pk)
    chest = ScanStudy.objects.get(scan=scan, variants__has_key="StudyDescription")
    # "Fix" on the scan page starts a draft of the scan and opens its editor.
    response = client_alice.post(
        reverse("imports:draft_from_scan", args=[scan.pk]),
        {"fix_study": chest.study_instance_uid, "fix_attribute": "StudyDescription"},
    )
    assert response.status_code == 302
    draft = ImportDraft.objects.get()
    assert response["Location"] == (
        f"{editor_url(draft)}?study={chest.study_instance_uid}&series=&fix=StudyDescription"
    )
    page = client_alice.get(response["Location"])
    body = page.content.decode()
    # 2 + 48 instances carry the canonical spelling, the 40 of the lung series the other.
    assert (
        '<td>“CT CHEST W CONTRAST” <span class="badge ok">most instances</span></td><td class="num">50</td>'
        in body
    )
    assert '<td>“CT Chest w/ contrast”</td><td class="num">40</td>' in body
    assert 'name="rows-2-tag" value="StudyDescription"' in body
    assert 'name="rows-2-value" value="CT CHEST W CONTRAST"' in body
    path = f"metadata/{chest.study_instance_uid}.json"
    saved = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [
                {"tag": "StudyInstanceUID", "value": chest.study_instance_uid},
                {"tag": "StudyDescription", "value": "CT CHEST W CONTRAST"},
            ],
            study=chest.study_instance_uid,
            path=path,
        ),
    )
    assert saved.status_code == 302
    mapping = draft.mappings.get()
    assert (
        mapping.study_instance_uid,
        mapping.series_instance_uid,
        mapping.metadata_file_path,
    ) == (
        chest.study_instance_uid,
        "",
        path,
    )
    lung = ScanSeries.objects.get(study=chest, series_description="Axial 2.0 B70f lung")
    preview = client_alice.get(
        reverse("imports:draft_preview", args=[draft.pk]),
        {"series": lung.series_instance_uid},
    ).content.decode()
    assert "StudyDescription (0008,1030)" in preview
    assert "CT CHEST W CONTRAST" in preview

    # Then a series-level file that corrects a PatientName with the PN widget: the composer accepts both.
    draft.refresh_from_db()
    brain_t2 = ScanSeries.objects.get(
        study__scan=scan, series_description=democorpus.T2_SCANNER_DESCRIPTION
    )
    response = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [
                {
                    "tag": "PatientName",
                    "pn-0-0": "Smith",
                    "pn-0-1": "John",
                    "pn-0-2": "Alan",
                }
            ],
            study=brain_t2.study.study_instance_uid,
            series=brain_t2.series_instance_uid,
            path=f"metadata/{brain_t2.series_instance_uid}.json",
        ),
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    problems = drafts.draft_validate(draft=draft)
    assert [p for p in problems if p.severity == "error"] == []
    assert [p.code for p in problems if p.row is not None] == [
        "patient_attribute_in_series_file"
    ]


def test_saving_over_an_existing_file_without_replace_is_refused_by_that_checkbox(
    draft: ImportDraft, client_alice: Client, world: LocalAWSHandle
) -> None:
    opened = editor.editor_open(draft=draft, path=STUDY_FILE)
    keys = s3_keys(world)
    response = client_alice.post(
        editor_url(draft),
        form_data(
            draft,
            [{"tag": "StudyDescription", "value": "TYPED BEFORE THE REFUSAL"}],
            path=STUDY_FILE,
            loaded_etag=opened.etag,
        ),
        HTTP_HX_REQUEST="true",
    )
    # 422: base.html's htmx-config swaps it into #editor (htmx 2 swaps no 4xx by default).
    assert response.status_code == 422
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="editor">')
    path_card = content[content.index('name="path"') : content.index('id="rows"')]
    assert "Replace the existing file" in path_card
    assert 'id="refusal"' in path_card
    assert "tick “Replace the existing file” to write over it" in path_card
    assert 'value="TYPED BEFORE THE REFUSAL"' in content
    assert s3_keys(world) == keys
