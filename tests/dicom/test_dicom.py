"""Header reading over ranged GETs, and DICOM JSON validation. Pure: no Django, no network."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from imports.dicom.header import read_header
from imports.dicom.header_read import HeaderRead
from imports.dicom.json_model import dataset_from_dicom_json, validate_dicom_json
from imports.dicom.sniff import sniff_kind
from imports.dicom.uids import uid_problem

STUDY = "1.2.826.0.1.3680043.8.498.10000000000000000000000000000000001"
SERIES = "1.2.826.0.1.3680043.8.498.20000000000000000000000000000000001"
SOP = "1.2.826.0.1.3680043.8.498.30000000000000000000000000000000001"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

EXPECTED = {
    "sop_class_uid": CT_IMAGE_STORAGE,
    "sop_instance_uid": SOP,
    "study_instance_uid": STUDY,
    "series_instance_uid": SERIES,
    "patient_name": "Doe^Jane",
    "patient_id": "PID-0042",
    "patient_birth_date": "19700101",
    "patient_sex": "F",
    "study_date": "20240131",
    "study_time": "101500",
    "study_description": "CT Chest",
    "accession_number": "ACC123",
    "study_id": "S1",
    "modality": "CT",
    "series_number": 3,
    "series_description": "Axial 1mm",
    "instance_number": 17,
    "specific_character_set": "ISO_IR 100",
}


class FakeObject:
    """An S3 object served by ranged GETs, counting what the reader asks for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests = 0
        self.bytes = 0
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        assert 0 <= start <= end, (start, end)
        self.requests += 1
        self.ranges.append((start, end))
        chunk = self.data[start : end + 1]
        self.bytes += len(chunk)
        return chunk


def read(data: bytes, **kwargs: Any) -> tuple[HeaderRead, FakeObject]:
    obj = FakeObject(data)
    result = read_header(obj, size=len(data), **kwargs)
    assert (result.requests, result.bytes_read) == (obj.requests, obj.bytes)
    return result, obj


def values(result: HeaderRead) -> dict[str, Any]:
    found = dataclasses.asdict(result)
    return {k: found[k] for k in EXPECTED}


def ct_image(
    before_patient: bytes = b"",
    after_wanted: bytes = b"",
    pixels: bytes = b"\x00\x01" * 512,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = SOP
    ds.StudyDate = "20240131"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC123"
    ds.Modality = "CT"
    ds.StudyDescription = "CT Chest"
    ds.SeriesDescription = "Axial 1mm"
    if before_patient:
        # A GE-style private group sitting between the study and patient attributes.
        block = ds.private_block(0x0009, "TEST PRIVATE", create=True)
        block.add_new(0x10, "OB", before_patient)
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-0042"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.StudyID = "S1"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 17
    if after_wanted:
        # A Siemens CSA-like private group after every attribute the scan needs.
        block = ds.private_block(0x0029, "TEST CSA", create=True)
        block.add_new(0x10, "OB", after_wanted)
    ds.Rows = 32
    ds.Columns = 16
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels
    return ds


def build(
    transfer_syntax: str | None = ExplicitVRLittleEndian,
    *,
    preamble: bool = True,
    before_patient: bytes = b"",
    after_wanted: bytes = b"",
    pixels: bytes = b"\x00\x01" * 512,
) -> bytes:
    """A small CT image written by pydicom in the given encoding; None writes a bare dataset with no file meta."""
    ds = ct_image(before_patient, after_wanted, pixels)
    buffer = io.BytesIO()
    if transfer_syntax is None:
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
        return buffer.getvalue()
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(SOP)
    ds.file_meta = meta
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[132:]


def bare(implicit: bool, little: bool) -> bytes:
    """A dataset with neither preamble nor file meta, in the given encoding."""
    ds = ct_image()
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=little)
    return buffer.getvalue()


def pixel_data_offset(data: bytes) -> int:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    elem = ds["PixelData"]
    header = 8 if ds.original_encoding[0] else 12
    assert elem.file_tell is not None
    return elem.file_tell - header


# --- every file pydicom ships ----------------------------------------------------------------------------------


def ct_small_path() -> str:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    return path


_DATA_ROOT = Path(pydicom.data.__file__).parent
# Listed from disk: get_testdata_files() would also try to download pydicom's external test files.
SHIPPED = sorted(
    str(p)
    for p in (_DATA_ROOT / "test_files").rglob("*")
    if p.is_file() and p.suffix != ".py"
)


@pytest.mark.parametrize(
    "path", SHIPPED, ids=lambda p: str(Path(p).relative_to(_DATA_ROOT))
)
def test_it_reads_the_same_uids_as_dcmread_for_every_file_pydicom_ships(
    path: str,
) -> None:
    data = Path(path).read_bytes()
    result, obj = read(data)
    assert obj.bytes <= len(data)
    try:
        ds = pydicom.dcmread(path)
    except Exception:
        ds = None
    if ds is None:
        if result.status == "ok":
            # Readable here but not by a plain dcmread: only bare datasets that look like DICOM qualify.
            forced = pydicom.dcmread(path, force=True)
            assert result.sop_instance_uid == str(forced.get("SOPInstanceUID"))
        else:
            assert result.error
        return
    assert result.status == "ok", result.error
    for attribute, field in (
        ("StudyInstanceUID", "study_instance_uid"),
        ("SeriesInstanceUID", "series_instance_uid"),
        ("SOPInstanceUID", "sop_instance_uid"),
    ):
        expected = ds.get(attribute)
        assert getattr(result, field) == (
            str(expected) if expected is not None else None
        )


def test_it_reads_ct_small_in_one_request_and_finds_its_pixel_data() -> None:
    data = Path(ct_small_path()).read_bytes()
    result, _ = read(data, to_pixel_data=True)
    assert (result.status, result.requests, result.bytes_read) == ("ok", 1, 16384)
    assert result.header_length == pixel_data_offset(data) == 6288
    small, _ = read(data, first_read=4096)
    assert (small.requests, small.bytes_read) == (1, 4096)
    assert small.series_instance_uid == "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"


# --- encodings built in code -----------------------------------------------------------------------------------

ENCODINGS = {
    "explicit-little": lambda: build(ExplicitVRLittleEndian),
    "implicit-little": lambda: build(ImplicitVRLittleEndian),
    "explicit-big": lambda: build(ExplicitVRBigEndian),
    "deflated": lambda: build(DeflatedExplicitVRLittleEndian),
    "no-preamble": lambda: build(ExplicitVRLittleEndian, preamble=False),
    "no-meta-implicit": lambda: build(None),
    "no-meta-explicit-little": lambda: bare(implicit=False, little=True),
    "no-meta-explicit-big": lambda: bare(implicit=False, little=False),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_it_reads_every_attribute_in_every_encoding(encoding: str) -> None:
    data = ENCODINGS[encoding]()
    result, obj = read(data)
    assert result.status == "ok", result.error
    assert values(result) == EXPECTED
    assert obj.requests == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_it_finds_the_pixel_data_offset_when_asked(encoding: str) -> None:
    data = ENCODINGS[encoding]()
    result, _ = read(data, to_pixel_data=True)
    if encoding == "deflated":
        assert (
            result.header_length is None
        )  # offsets inside the inflated stream mean nothing to the object
    else:
        assert result.header_length == pixel_data_offset(data)


def test_it_reports_the_transfer_syntax_and_whether_file_meta_exists() -> None:
    with_meta, _ = read(build(ExplicitVRBigEndian))
    without, _ = read(build(None))
    assert (with_meta.has_file_meta, with_meta.transfer_syntax_uid) == (
        True,
        ExplicitVRBigEndian,
    )
    assert (without.has_file_meta, without.transfer_syntax_uid) == (False, None)


def test_it_strips_the_nul_padding_of_odd_length_uids() -> None:
    data = build()
    assert len(SERIES) % 2 == 1
    assert SERIES.encode() + b"\x00" in data
    result, _ = read(data)
    assert result.series_instance_uid == SERIES


def test_it_reads_a_header_with_a_100_kib_private_element_in_exactly_two_requests() -> (
    None
):
    data = build(before_patient=os.urandom(100 * 1024))
    result, obj = read(data, to_pixel_data=True)
    assert result.status == "ok", result.error
    assert values(result) == EXPECTED
    assert obj.requests == 2
    assert result.header_length == pixel_data_offset(data)
    # The private value is skipped, not downloaded.
    assert obj.bytes < 40 * 1024


def test_it_stops_before_a_large_private_group_after_the_wanted_attributes() -> None:
    data = build(after_wanted=os.urandom(100 * 1024))
    result, obj = read(data)
    assert values(result) == EXPECTED
    assert (obj.requests, result.header_length) == (1, None)
    found, obj = read(data, to_pixel_data=True)
    assert (obj.requests, found.header_length) == (2, pixel_data_offset(data))


def test_it_reads_a_deflated_header_longer_than_the_first_read() -> None:
    # Random bytes do not compress, so the deflate stream must be fetched well past the first read.
    data = build(DeflatedExplicitVRLittleEndian, before_patient=os.urandom(64 * 1024))
    result, obj = read(data)
    assert result.status == "ok", result.error
    assert values(result) == EXPECTED
    assert 2 <= obj.requests <= 3


def test_it_reports_a_0_byte_object_without_fetching() -> None:
    result, obj = read(b"")
    assert (result.status, result.error, obj.requests) == (
        "unreadable",
        "0-byte object",
        0,
    )


def test_it_reports_a_file_that_claims_dicm_but_holds_garbage() -> None:
    data = b"\0" * 128 + b"DICM" + bytes(range(7, 250)) * 20
    result, _ = read(data)
    assert result.status == "unreadable"
    assert result.error.startswith("Not readable as DICOM: DICM prefix present")


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7 " * 100,
        b'{"00100010": {"vr": "PN"}}',
        os.urandom(5000),
        b"\x89PNG\r\n\x1a\n" + b"\0" * 300,
    ],
    ids=["pdf", "json", "random", "png"],
)
def test_it_reports_other_files_as_not_dicom(data: bytes) -> None:
    result, _ = read(data)
    assert (result.status, result.error) == (
        "not_dicom",
        "Not a DICOM file: no DICM prefix and no recognisable dataset",
    )


def test_it_names_the_element_a_truncated_file_ends_in() -> None:
    data = build()
    cut = data.index(SERIES.encode()) + 10
    result, _ = read(data[:cut])
    assert result.status == "unreadable"
    assert result.error == f"File ends inside element (0020,000E) at byte {cut:,}"
    assert result.series_instance_uid is None


def test_it_reports_a_corrupt_deflate_stream() -> None:
    data = bytearray(build(DeflatedExplicitVRLittleEndian))
    start = pydicom.dcmread(
        io.BytesIO(bytes(data)), stop_before_pixels=True
    ).file_meta.FileMetaInformationGroupLength
    data[144 + start : 144 + start + 8] = b"\xff" * 8
    result, _ = read(bytes(data))
    assert result.status == "unreadable"
    assert result.error.startswith("Deflated dataset is corrupt")


def test_it_gives_up_on_a_header_longer_than_max_header() -> None:
    data = build(before_patient=b"\0" * 300_000)
    result, _ = read(data, max_header=200_000)
    assert result.status == "unreadable"
    assert "200,000-byte limit" in result.error


def test_it_lets_transport_errors_through() -> None:
    def failing(start: int, end: int) -> bytes:
        raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        read_header(failing, size=1000)


def test_it_reports_an_object_shorter_than_its_listed_size() -> None:
    data = build()
    result = read_header(FakeObject(data[:100]), size=len(data), first_read=64)
    assert result.status == "unreadable"
    assert "returned no data" in result.error


# --- the silent-truncation trap --------------------------------------------------------------------------------

SMALL = {
    "explicit-little": lambda: build(pixels=b"\0\1" * 8),
    "implicit-little": lambda: build(ImplicitVRLittleEndian, pixels=b"\0\1" * 8),
    "explicit-big": lambda: build(ExplicitVRBigEndian, pixels=b"\0\1" * 8),
    "deflated": lambda: build(DeflatedExplicitVRLittleEndian, pixels=b"\0\1" * 8),
    "no-meta": lambda: build(None, pixels=b"\0\1" * 8),
}


@pytest.mark.parametrize("encoding", SMALL)
def test_it_returns_the_same_values_whatever_the_first_read_size(encoding: str) -> None:
    data = SMALL[encoding]()
    whole, _ = read(data, to_pixel_data=True)
    assert values(whole) == EXPECTED
    for first_read in range(1, len(data) + 2):
        result, obj = read(data, first_read=first_read, to_pixel_data=True)
        assert values(result) == EXPECTED, first_read
        assert result.header_length == whole.header_length, first_read
        if encoding != "deflated":
            assert obj.bytes <= len(data), first_read  # no byte is fetched twice


@pytest.mark.parametrize("encoding", SMALL)
def test_it_never_returns_a_truncated_value_from_a_cut_object(encoding: str) -> None:
    data = SMALL[encoding]()
    outcomes = set()
    for cut in range(len(data) + 1):
        result, _ = read(data[:cut], first_read=256)
        outcomes.add(result.status)
        if result.status != "ok":
            assert result.error, cut
            continue
        for field, expected in EXPECTED.items():
            assert getattr(result, field) in (None, expected), (
                cut,
                field,
                getattr(result, field),
            )
    assert outcomes >= {"ok", "unreadable"}


# --- sniffing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "head", "kind"),
    [
        ("a/b/IM0001.dcm", b"", "dicom"),
        ("a/b/IM0001.DCM", b"garbage", "dicom"),
        ("meta/study.json", b"", "json"),
        ("a/b/1.2.3.4", b"\0" * 128 + b"DICM" + b"\2\0", "dicom"),
        ("a/b/IM0002", build(None)[:64], "dicom"),
        ("a/b/IM0003", bare(implicit=False, little=False)[:64], "dicom"),
        ("a/b/overrides", b'\xef\xbb\xbf \n {"0020000D": {}}', "json"),
        ("a/b/list", b"\n[{}]", "json"),
        ("a/b/readme.txt", b"This folder holds...", "other"),
        ("a/b/photo", b"\x89PNG\r\n\x1a\n", "other"),
        ("a/b/empty", b"", "other"),
    ],
)
def test_it_sniffs_the_kind_from_the_name_or_the_first_bytes(
    key: str, head: bytes, kind: str
) -> None:
    assert sniff_kind(key, head) == kind


# --- UIDs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("1.2.840.10008.1.2.1", None),
        ("0", None),
        ("2.25.329800735698586629295641978511506172918", None),
        ("1." + "2" * 62, None),
        ("", "UID is empty"),
        ("1." + "2" * 63, "UID is 65 characters long; the maximum is 64"),
        (
            "1.2.03.4",
            "UID component '03' has a leading zero; only the component '0' may start with 0",
        ),
        ("1.2.abc", "UID contains 'a', 'b', 'c'; only digits 0-9 and '.' are allowed"),
        ("1.2.3 ", "UID contains ' '; only digits 0-9 and '.' are allowed"),
        ("1.2.3\n", "UID contains '\\n'; only digits 0-9 and '.' are allowed"),
        (".1.2", "UID starts with '.'; it must start with a digit"),
        ("1.2.", "UID ends with '.'; it must end with a digit"),
        (
            "1..2",
            "UID has an empty component ('..'); components are separated by a single '.'",
        ),
    ],
)
def test_it_explains_what_is_wrong_with_a_uid(uid: str, problem: str | None) -> None:
    assert uid_problem(uid) == problem


# --- DICOM JSON ------------------------------------------------------------------------------------------------


def attr(vr: str, *value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(value)}


GOOD = {
    "0020000D": attr("UI", STUDY),
    "0020000E": attr("UI", SERIES),
    "00100010": attr("PN", {"Alphabetic": "Doe^Jane", "Ideographic": "山田^太郎"}),
    "00081030": attr("LO", "CT Chest"),
}


def check(dataset: Any) -> list[tuple[str, str]]:
    return [
        (e.path, e.message) for e in validate_dicom_json(json.dumps(dataset)).errors
    ]


def test_it_accepts_a_valid_dicom_json_object_and_lists_its_uids() -> None:
    result = validate_dicom_json(json.dumps(GOOD).encode())
    assert result.is_valid, result.errors
    assert (result.study_uids, result.series_uids) == ([STUDY], [SERIES])


def test_it_accepts_pydicoms_own_json_output() -> None:
    ds = pydicom.dcmread(ct_small_path(), stop_before_pixels=True)
    result = validate_dicom_json(ds.to_json())
    assert result.is_valid, result.errors


# (attribute key, attribute, expected path, part of the expected message); each rule also has a passing twin below.
FAILING = [
    (
        "PatientName",
        attr("PN", {"Alphabetic": "A"}),
        "(key 5)",
        "key 5 is not a valid key; keyword keys are not allowed; use the tag '00100010'",
    ),
    # A key that is not a tag is named by its position, never quoted (it may be a patient's name).
    ("0020000d", attr("UI", STUDY), "(key 5)", "uppercase hex: '0020000D'"),
    ("(0010,0010)", attr("PN"), "(key 5)", "'00100010'"),
    ("Doe^Jane", attr("LO"), "(key 5)", "key 5 is not a valid key; keys are tags"),
    (
        "00080000",
        attr("UL", 4),
        "00080000",
        "group length elements (gggg0000) must not be included",
    ),
    ("00081030", {"Value": ["x"]}, "00081030", "'vr' is required"),
    (
        "00081030",
        attr("ZZ", "x"),
        "00081030.vr",
        '"ZZ" is not a DICOM VR; use one of AE, AS',
    ),
    (
        "00081030",
        attr("SH", "x"),
        "00081030.vr",
        "VR 'SH' does not match the data dictionary: StudyDescription (0008,1030) is LO",
    ),
    ("00280106", attr("FL", 1.0), "00280106.vr", "is US or SS"),
    (
        "00081030",
        {"vr": "LO", "Value": ["x"], "InlineBinary": "eA=="},
        "00081030",
        "at most one of Value, BulkDataURI",
    ),
    (
        "00081030",
        {"vr": "LO", "Value": "x"},
        "00081030.Value",
        "Value must be an array",
    ),
    (
        "00081030",
        {"vr": "LO", "value": ["x"]},
        "00081030.(member 2)",
        "unknown member",
    ),
    (
        "00100010",
        attr("PN", "Doe^Jane"),
        "00100010.Value[0]",
        'PN values are objects such as {"Alphabetic"',
    ),
    (
        "00100010",
        attr("PN", {"Alpha": "Doe"}),
        "00100010.Value[0].(member 1)",
        "unknown PN component group",
    ),
    (
        "00100010",
        attr("PN", {"Alphabetic": "D" * 65}),
        "00100010.Value[0].Alphabetic",
        "PN is at most 64 characters per component group",
    ),
    (
        "00081115",
        attr("SQ", "x"),
        "00081115.Value[0]",
        "sequence items must be objects",
    ),
    (
        "00081115",
        attr("SQ", {"0020000E": attr("UI", "1.02")}),
        "00081115.Value[0].0020000E.Value[0]",
        "a UID component has a leading zero",
    ),
    (
        "0020000D",
        attr("UI", "1.2.03"),
        "0020000D.Value[0]",
        "a UID component has a leading zero",
    ),
    ("0020000D", attr("UI", "1." * 40 + "1"), "0020000D.Value[0]", "the maximum is 64"),
    (
        "00081030",
        attr("LO", "x" * 65),
        "00081030.Value[0]",
        "LO is at most 64 characters",
    ),
    (
        "00200010",
        attr("SH", "x" * 17),
        "00200010.Value[0]",
        "SH is at most 16 characters",
    ),
    ("00080060", attr("CS", "ct"), "00080060.Value[0]", "CS allows uppercase letters"),
    ("00080060", attr("CS", "C" * 17), "00080060.Value[0]", "CS is at most 16"),
    ("00080020", attr("DA", "2024-01-31"), "00080020.Value[0]", "DA is YYYYMMDD"),
    ("00080020", attr("DA", "20240231"), "00080020.Value[0]", "not a calendar date"),
    ("00080030", attr("TM", "251500"), "00080030.Value[0]", "TM is HH, HHMM, HHMMSS"),
    ("00180050", attr("DS", "1.2.3"), "00180050.Value[0]", "not a decimal number"),
    (
        "00180050",
        attr("DS", "1.234567890123456"),
        "00180050.Value[0]",
        "DS is at most 16",
    ),
    ("00180050", attr("DS", ""), "00180050.Value[0]", "use null for an empty value"),
    ("00200013", attr("IS", ""), "00200013.Value[0]", "use null for an empty value"),
    ("00200013", attr("IS", "1.5"), "00200013.Value[0]", "not an integer"),
    ("00200013", attr("IS", 2**31), "00200013.Value[0]", "out of range for IS"),
    ("00200013", attr("IS", "1234567890123"), "00200013.Value[0]", "IS is at most 12"),
    ("00200013", attr("IS", True), "00200013.Value[0]", "numbers or numeric strings"),
    ("00080054", attr("AE", "A" * 17), "00080054.Value[0]", "AE is at most 16"),
    ("00101010", attr("AS", "45Y"), "00101010.Value[0]", "AS is three digits"),
    ("00081030", attr("LO", "a\\b"), "00081030.Value[0]", "backslash"),
    ("00081030", attr("LO", "a\nb"), "00081030.Value[0]", "control character U+000A"),
    ("00081030", attr("LO", "a\x00b"), "00081030.Value[0]", "control character U+0000"),
    (
        "00081030",
        attr("LO", "a\ud800b"),
        "00081030.Value[0]",
        "lone surrogate (U+D800)",
    ),
    (
        "00100010",
        attr("PN", {"Alphabetic": "Doe^\udfff"}),
        "00100010.Value[0].Alphabetic",
        "lone surrogate (U+DFFF)",
    ),
    ("00204000", attr("LT", "x" * 10241), "00204000.Value[0]", "LT is at most 10240"),
    ("00081030", attr("LO", "a", "b"), "00081030.Value", "takes VM 1; got 2 values"),
    ("00280010", attr("US", 70000), "00280010.Value[0]", "out of range for US"),
    ("00280010", attr("US", "16"), "00280010.Value[0]", "whole JSON numbers"),
    (
        "00091010",
        {"vr": "LO", "InlineBinary": "eA=="},
        "00091010.InlineBinary",
        "InlineBinary is only allowed for OB, OD, OF",
    ),
    (
        "00091010",
        {"vr": "OB", "InlineBinary": "not base64!"},
        "00091010.InlineBinary",
        "not valid base64",
    ),
    ("00091010", attr("OB", 1, 2), "00091010.Value", "put it in InlineBinary"),
    (
        "00420011",
        {"vr": "OB", "BulkDataURI": "https://example.invalid/x"},
        "00420011.BulkDataURI",
        "BulkDataURI is not supported: the import cannot fetch",
    ),
    (
        "00280009",
        attr("AT", "0010,0010"),
        "00280009.Value[0]",
        "AT values are tags written as 8 uppercase hex digits",
    ),
]


@pytest.mark.parametrize(
    ("key", "attribute", "path", "message"),
    FAILING,
    ids=[f"{f[2]}:{f[3][:30]}" for f in FAILING],
)
def test_it_rejects_dicom_json_that_breaks_a_rule(
    key: str, attribute: Any, path: str, message: str
) -> None:
    found = check({**GOOD, key: attribute})
    assert any(p == path and message in m for p, m in found), found


PASSING = [
    ("00281050", attr("DS", 40, "-1.5e3", None, " 12.5 ")),
    ("00200013", attr("IS", 17)),
    ("00200013", attr("IS", "+17")),
    ("00200013", attr("IS", None)),
    ("00200013", {"vr": "IS"}),
    ("00280106", attr("SS", -5)),
    ("00280106", attr("US", 5)),
    ("00080008", attr("CS", "ORIGINAL", "PRIMARY", "AXIAL")),
    ("00080020", attr("DA", "20240229")),
    ("00080030", attr("TM", "1015")),
    ("00080030", attr("TM", "101500.123456")),
    ("0008002A", attr("DT", "20240131101500.1+0100")),
    ("00101010", attr("AS", "045Y")),
    ("00204000", attr("LT", "line one\r\nline two \\ with a backslash")),
    ("00091010", {"vr": "OB", "InlineBinary": base64.b64encode(b"\0\1\2").decode()}),
    ("00091011", {"vr": "UN", "InlineBinary": ""}),
    ("00091012", attr("LO", "private VR is not checked against a dictionary")),
    ("00081115", attr("SQ", {}, {"0020000E": attr("UI", "1.2.3")})),
    ("00100010", attr("PN", {"Alphabetic": "Doe^Jane^^Dr^PhD"})),
    ("00100021", attr("LO", None)),
    ("00280009", attr("AT", "00100010", "00200013")),
    # A surrogate pair in the JSON text is one character (U+1F600), not a lone surrogate.
    ("00081030", attr("LO", "CT \U0001f600")),
    ("00189087", attr("FD", 1e308)),
    ("00189087", attr("FD", -5e-324)),
]


@pytest.mark.parametrize(
    ("key", "attribute"), PASSING, ids=[f"{p[0]}-{p[1]['vr']}" for p in PASSING]
)
def test_it_accepts_dicom_json_that_follows_the_rules(key: str, attribute: Any) -> None:
    assert check({**GOOD, key: attribute}) == []


@pytest.mark.parametrize(
    ("text", "finite"),
    [
        ('{"00189087": {"vr": "FD", "Value": [1e999]}}', False),
        ('{"00189087": {"vr": "FD", "Value": [1.7e308]}}', True),
        ('{"00180050": {"vr": "DS", "Value": [-1e999]}}', False),
        ('{"00180050": {"vr": "DS", "Value": [-1.7e308]}}', True),
    ],
)
def test_it_rejects_a_number_beyond_a_double_which_parses_as_infinity(
    text: str, finite: bool
) -> None:
    errors = [(e.path, e.message) for e in validate_dicom_json(text).errors]
    if finite:
        assert errors == []
    else:
        [(path, message)] = errors
        assert path.endswith(".Value[0]")
        assert "beyond the range of a double" in message


def test_it_rejects_a_top_level_array() -> None:
    assert check([GOOD, GOOD]) == [
        ("", "expected one DICOM JSON object, got an array of 2")
    ]


def test_it_rejects_a_top_level_string() -> None:
    assert check("hello") == [("", "expected one DICOM JSON object, got a string")]


def test_it_rejects_the_same_uid_for_study_and_series() -> None:
    found = check({**GOOD, "0020000E": attr("UI", STUDY)})
    assert (
        "0020000E",
        f"UID {STUDY} names both the study and the series; they must differ",
    ) in found


def test_it_rejects_a_repeated_key() -> None:
    text = '{"00081030": {"vr": "LO", "Value": ["a"]}, "00081030": {"vr": "LO", "Value": ["b"]}}'
    assert [(e.path, e.message) for e in validate_dicom_json(text).errors] == [
        ("00081030", "key appears more than once in the same object")
    ]


def test_it_rejects_text_that_is_not_utf8() -> None:
    errors = validate_dicom_json(
        b'{"00081030": {"vr": "LO", "Value": ["\xe9"]}}'
    ).errors
    assert [e.message for e in errors] == ["not valid UTF-8: byte 0xE9 at offset 37"]


def test_it_rejects_a_byte_order_mark_but_still_checks_the_rest() -> None:
    errors = validate_dicom_json(b"\xef\xbb\xbf" + json.dumps(GOOD).encode()).errors
    assert [e.message for e in errors] == [
        "file starts with a UTF-8 byte order mark; save it as UTF-8 without BOM"
    ]


def test_it_rejects_broken_json_with_its_position() -> None:
    errors = validate_dicom_json('{"00081030": {"vr": "LO",}}').errors
    assert errors[0].message.startswith("not valid JSON: ")
    assert "line 1 column 26" in errors[0].message


def test_it_rejects_nan() -> None:
    errors = validate_dicom_json('{"00181050": {"vr": "DS", "Value": [NaN]}}').errors
    assert [e.message for e in errors] == [
        "NaN is not a JSON number; use null for an empty value"
    ]


def test_it_refuses_input_over_max_bytes_without_parsing_it() -> None:
    big = json.dumps({**GOOD, "00204000": attr("LT", "x" * 2000)})
    result = validate_dicom_json(big, max_bytes=1024)
    assert not result.is_valid
    assert (
        result.errors[0].message
        == f"file is {len(big) / 1000:.3g} kB; metadata files are read up to 1.02 kB only"
    )
    assert validate_dicom_json(big, max_bytes=len(big)).is_valid


def test_it_builds_a_dataset_from_valid_dicom_json() -> None:
    ds = dataset_from_dicom_json(GOOD)
    assert (ds.StudyInstanceUID, ds.PatientName.alphabetic, ds.StudyDescription) == (
        STUDY,
        "Doe^Jane",
        "CT Chest",
    )
    assert dataset_from_dicom_json(json.dumps(GOOD)).SeriesInstanceUID == SERIES


def test_it_refuses_to_build_a_dataset_from_invalid_dicom_json() -> None:
    with pytest.raises(ValueError, match="use the tag '00100010'"):
        dataset_from_dicom_json({"PatientName": attr("PN", {"Alphabetic": "Doe"})})


@pytest.mark.parametrize(
    "data", [b"hello", b"plain text", b"x" * 131, b"%PDF-1.7\n" + b"\0" * 200]
)
def test_it_calls_short_and_plain_files_not_dicom_rather_than_cut(data: bytes) -> None:
    result = read_header(lambda start, end: data[start : end + 1], size=len(data))
    assert (result.status, result.error) == (
        "not_dicom",
        "Not a DICOM file: no DICM prefix and no recognisable dataset",
    )
