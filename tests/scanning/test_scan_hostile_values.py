"""Values no database column can hold: one such object is its own recorded reason, never the scan's end.

PostgreSQL text cannot hold U+0000, its JSON cannot hold a lone surrogate or a number beyond a double, and
SQLite's driver cannot encode a lone surrogate. Each case puts one hostile object among good ones, over
localaws, and runs the scan in the test process; each rule has a near miss that is read as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from imports.models import ObjectHeader, Scan, ScanObject
from imports.scanning import control, lookup, pipeline, run, storable
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.77"
SERIES = STUDY + ".1"
BUCKET = "hostile-in"
PREFIX = "incoming/"


@dataclass(frozen=True)
class Case:
    key: str
    body: bytes
    status: str  # what the object is recorded as
    reason: str  # a part of its recorded reason ("" for a good object)


def dicom(**attributes: Any) -> bytes:
    return dicom_bytes(study=STUDY, series=SERIES, **attributes)


def run_scan() -> Scan:
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region="us-east-1", enqueue=False
    )
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    return result


@pytest.fixture
def bucket(localaws: LocalAWSHandle) -> LocalAWSHandle:
    localaws.create_bucket(BUCKET)
    for i in range(3):
        localaws.put(f"s3://{BUCKET}/{PREFIX}good/{i}.dcm", dicom(InstanceNumber=i))
    return localaws


def assert_recorded(scan: Scan, case: Case) -> None:
    """The scan completed, the object has its status and reason, and the good ones were read as usual."""
    assert scan.status == Scan.Status.COMPLETED, scan.error
    headers = {h.key: h for h in ObjectHeader.objects.of_scan(scan)}
    good = [h for k, h in headers.items() if k.startswith(f"{PREFIX}good/")]
    assert [h.status for h in good] == [ObjectHeader.Status.OK] * 3
    [header] = [h for k, h in headers.items() if not k.startswith(f"{PREFIX}good/")]
    assert header.status == case.status, header.error
    if case.reason:
        assert case.reason in header.error
    else:
        assert header.error == ""
    scan.refresh_from_db()
    assert scan.objects_done == ScanObject.objects.filter(scan=scan).count() == 4
    assert scan.objects_listed == 4


DICOM_CASES = {
    "NUL in PatientName (PN)": Case(
        f"{PREFIX}nul/pn.dcm",
        dicom(PatientName="Doe\x00Jane"),
        ObjectHeader.Status.UNREADABLE,
        "PatientName holds a NUL character (U+0000)",
    ),
    "NUL in StudyDescription (LO)": Case(
        f"{PREFIX}nul/lo.dcm",
        dicom(StudyDescription="CT\x00HEAD"),
        ObjectHeader.Status.UNREADABLE,
        "StudyDescription holds a NUL character (U+0000)",
    ),
    "NUL in PatientID (LO)": Case(
        f"{PREFIX}nul/id.dcm",
        dicom(PatientID="PAT\x001"),
        ObjectHeader.Status.UNREADABLE,
        "PatientID holds a NUL character (U+0000)",
    ),
    # DICOM pads some values with NUL; trailing padding is no part of the value.
    "NUL padding after PatientID": Case(
        f"{PREFIX}nul/padded.dcm",
        dicom(PatientID="PAT-1\x00"),
        ObjectHeader.Status.OK,
        "",
    ),
}


@pytest.mark.parametrize("case", DICOM_CASES.values(), ids=DICOM_CASES.keys())
def test_a_dicom_value_no_column_can_hold_is_the_files_reason(
    db: None, bucket: LocalAWSHandle, case: Case
) -> None:
    bucket.put(f"s3://{BUCKET}/{case.key}", case.body)
    assert_recorded(run_scan(), case)


def _json(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


JSON_CASES = {
    "NUL in a value": Case(
        f"{PREFIX}meta/nul-value.json",
        _json('{"00081030": {"vr": "LO", "Value": ["CT\\u0000HEAD"]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "U+0000",
    ),
    "NUL in a key": Case(
        f"{PREFIX}meta/nul-key.json",
        _json('{"0008\\u00001030": {"vr": "LO", "Value": ["CT HEAD"]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "key 1 is not a valid key",
    ),
    "lone surrogate in a value": Case(
        f"{PREFIX}meta/surrogate-value.json",
        _json('{"00081030": {"vr": "LO", "Value": ["CT \\ud800 HEAD"]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "lone surrogate (U+D800)",
    ),
    "lone surrogate in a key": Case(
        f"{PREFIX}meta/surrogate-key.json",
        _json('{"\\ud800": {"vr": "LO", "Value": ["CT HEAD"]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "key 1 is not a valid key",
    ),
    "a surrogate pair (one character) in a value": Case(
        f"{PREFIX}meta/pair.json",
        _json('{"00081030": {"vr": "LO", "Value": ["CT \\ud83d\\ude00 HEAD"]}}'),
        ObjectHeader.Status.JSON_VALID,
        "",
    ),
    "1e999 under FD": Case(
        f"{PREFIX}meta/fd-inf.json",
        _json('{"00189087": {"vr": "FD", "Value": [1e999]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "finite",
    ),
    "1e308 under FD": Case(
        f"{PREFIX}meta/fd-big.json",
        _json('{"00189087": {"vr": "FD", "Value": [1e308]}}'),
        ObjectHeader.Status.JSON_VALID,
        "",
    ),
    "-1e999 under DS": Case(
        f"{PREFIX}meta/ds-inf.json",
        _json('{"00180050": {"vr": "DS", "Value": [-1e999]}}'),
        ObjectHeader.Status.JSON_INVALID,
        "finite",
    ),
    "-1e308 under DS": Case(
        f"{PREFIX}meta/ds-big.json",
        _json('{"00180050": {"vr": "DS", "Value": [-1e308]}}'),
        ObjectHeader.Status.JSON_VALID,
        "",
    ),
}


@pytest.mark.parametrize("case", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_a_json_value_no_column_can_hold_is_the_files_reason(
    db: None, bucket: LocalAWSHandle, case: Case
) -> None:
    bucket.put(f"s3://{BUCKET}/{case.key}", case.body)
    assert_recorded(run_scan(), case)


KEY_CASES = {
    "NUL in the key": Case(
        f"{PREFIX}nul\x00key.dcm",
        dicom(),
        ObjectHeader.Status.UNREADABLE,
        "The key holds a NUL character (U+0000)",
    ),
    "other odd characters in the key": Case(
        f"{PREFIX}tab\tand ünïcode \U0001f600.dcm", dicom(), ObjectHeader.Status.OK, ""
    ),
}


@pytest.mark.parametrize("case", KEY_CASES.values(), ids=KEY_CASES.keys())
def test_a_key_no_column_can_hold_is_the_objects_reason(
    db: None, bucket: LocalAWSHandle, case: Case
) -> None:
    bucket.put(f"s3://{BUCKET}/{case.key}", case.body)
    scan = run_scan()
    assert_recorded(scan, case)
    [header] = ObjectHeader.objects.of_scan(scan).exclude(
        key__startswith=f"{PREFIX}good/"
    )
    assert header.key == case.key.replace("\x00", "\ufffd")
    # The stored key is not the object's: it never stands in the cache for another object. And
    # such an object is not read at all (nor left for "read the rest", which could not ask for it).
    refused = case.status != ObjectHeader.Status.OK
    assert header.reusable is not refused
    assert (header.requests == 0) is refused


def test_a_scan_that_met_a_nul_key_still_describes_its_prefix(
    db: None, bucket: LocalAWSHandle
) -> None:
    # Otherwise every draft of the prefix would start a new scan, for ever.
    bucket.put(f"s3://{BUCKET}/{PREFIX}nul\x00key.dcm", dicom())
    scan = run_scan()
    assert lookup.scan_is_current(scan=scan)
    bucket.put(f"s3://{BUCKET}/{PREFIX}nul\x00key-2.dcm", dicom())
    assert not lookup.scan_is_current(scan=scan)


# --- The fallback: a row that still fails never loses its batch -----------------------------------


def _header(key: str, **fields: object) -> ObjectHeader:
    return ObjectHeader(
        bucket=BUCKET,
        key=key,
        etag='"e"',
        size=1,
        kind=ObjectHeader.Kind.DICOM,
        status=ObjectHeader.Status.OK,
        **fields,
    )


UNSTORED = {
    "a number beyond a double in a JSON column": {"json_document": {"x": float("inf")}},
    "a lone surrogate in a text column": {"study_description": "CT \ud800"},
}


@pytest.mark.parametrize("fields", UNSTORED.values(), ids=UNSTORED.keys())
def test_a_row_the_database_refuses_is_replaced_by_its_reason_and_the_batch_is_kept(
    db: None, fields: dict[str, object]
) -> None:
    batch = [_header("a"), _header("b", **fields), _header("c")]
    stored = storable.headers_create(batch)
    assert [h.key for h in stored] == ["a", "b", "c"]
    assert stored[0] is batch[0]
    assert stored[2] is batch[2]
    assert stored[1].pk is not None
    assert not stored[1].reusable
    assert "could not be stored" in stored[1].error
    assert dict(ObjectHeader.objects.values_list("key", "status")) == {
        "a": "ok",
        "b": "unreadable",
        "c": "ok",
    }


def test_a_batch_the_database_takes_is_written_as_it_is(db: None) -> None:
    batch = [_header("a"), _header("b", study_description="CT \U0001f600")]
    assert storable.headers_create(batch) == batch
    assert ObjectHeader.objects.get(key="b").study_description == "CT \U0001f600"


# The cleaning bypassed: on PostgreSQL the insert raises, on SQLite INSERT OR IGNORE drops the row
# its JSON check refuses; either way the object gets a row of its own that says so.
def test_a_value_that_slips_past_the_cleaning_is_still_the_files_reason(
    db: None, bucket: LocalAWSHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "header_storable", lambda header: header)
    key = f"{PREFIX}meta/fd-inf.json"
    bucket.put(f"s3://{BUCKET}/{key}", JSON_CASES["1e999 under FD"].body)
    assert_recorded(
        run_scan(),
        Case(key, b"", ObjectHeader.Status.JSON_INVALID, "could not be stored"),
    )


def test_the_cleaning_keeps_a_storable_document_as_it_is_and_its_order() -> None:
    document = {"b": [1, 2.5, {"c": "ü \U0001f600"}], "a": None, "z": [[True]]}
    assert storable.json_storable(document) == (document, False)
    assert list(storable.json_storable(document)[0]) == ["b", "a", "z"]


def test_the_cleaning_replaces_what_no_column_holds_at_any_depth() -> None:
    document = {"k\x00": [1, {"\ud800": ["a\x00", float("-inf")]}, float("nan")]}
    assert storable.json_storable(document) == (
        {"k\ufffd": [1, {"\ufffd": ["a\ufffd", None]}, None]},
        True,
    )
