"""The fast header path answers exactly as the careful reader does, and hands it everything unusual. Pure."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from bench.scan_data import build_object
from imports.dicom import fast as dicomfast
from imports.dicom.fast import read_header_fast
from imports.dicom.header import read_header
from imports.dicom.header_read import HeaderRead
from tests.dicom.test_dicom import _DATA_ROOT, EXPECTED, SHIPPED, build, ct_image

FIRST_READS = (1024, 8192, 16384, 1 << 20)


class Ranges:
    """An object served by ranged GETs, remembering every range asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        self.asked.append((start, end))
        return self.data[start : end + 1]


@pytest.fixture
def careful_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often the fast path handed an object to the careful reader."""
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> HeaderRead:
        calls.append(1)
        return read_header(*args, **kwargs)

    monkeypatch.setattr(dicomfast, "read_header", counted)
    return calls


def both(data: bytes, first_read: int, to_pixel_data: bool = False) -> HeaderRead:
    """Read with each reader; assert identical results and identical GETs; return the result."""
    careful, fast = Ranges(data), Ranges(data)
    expected = read_header(
        careful, size=len(data), first_read=first_read, to_pixel_data=to_pixel_data
    )
    got = read_header_fast(
        fast, size=len(data), first_read=first_read, to_pixel_data=to_pixel_data
    )
    assert got == expected
    assert fast.asked == careful.asked
    return got


@pytest.mark.parametrize(
    "path", SHIPPED, ids=lambda p: str(Path(p).relative_to(_DATA_ROOT))
)
def test_it_agrees_with_the_careful_reader_on_every_file_pydicom_ships(
    path: str,
) -> None:
    data = Path(path).read_bytes()
    for first_read in FIRST_READS:
        for to_pixel_data in (False, True):
            both(data, first_read, to_pixel_data)
    # Cut short anywhere, the answer is still the careful reader's (a reason, never a partial value).
    for cut in (140, 300, 700, 1500, 3000, len(data) // 2, len(data) - 1):
        if 0 < cut < len(data):
            both(data[:cut], 1024)
            both(data[:cut], 8192)


def test_its_uids_match_dcmread_where_it_answers_alone(
    careful_calls: list[int],
) -> None:
    answered = 0
    for path in SHIPPED:
        data = Path(path).read_bytes()
        before = len(careful_calls)
        result = read_header_fast(Ranges(data), size=len(data), first_read=1 << 20)
        if len(careful_calls) > before:
            continue
        answered += 1
        ds = pydicom.dcmread(path)
        for field, keyword in (
            ("sop_instance_uid", "SOPInstanceUID"),
            ("study_instance_uid", "StudyInstanceUID"),
            ("series_instance_uid", "SeriesInstanceUID"),
        ):
            expected = ds.get(keyword)
            assert getattr(result, field) == (expected or None), (path, field)
        assert result.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    # Most of the corpus is ordinary: the fast path is not a path nobody takes.
    assert answered > 40


def test_it_agrees_on_the_benchmarks_objects_and_answers_most_alone(
    careful_calls: list[int],
) -> None:
    pixels = bytes(range(256)) * 300
    objects = [
        build_object("b/", i, 3000, 48 * 1024, pixels) for i in range(0, 3000, 9)
    ]
    for data, _planned in objects:
        for first_read in (8192, 16384):
            both(data, first_read)
    # Every transfer syntax of the bench, big endian included; only headers past the first read are not.
    assert {planned.transfer_syntax for _data, planned in objects} >= {
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    }
    ordinary = [data for data, planned in objects if not planned.large_private]
    careful_calls.clear()
    for data in ordinary:
        result = read_header_fast(Ranges(data), size=len(data), first_read=32768)
        assert result.status == "ok"
    assert careful_calls == []


def test_it_reads_an_ordinary_object_alone_with_every_value(
    careful_calls: list[int],
) -> None:
    data = build(ExplicitVRLittleEndian)
    result = both(data, 16384)
    careful_calls.clear()
    assert read_header_fast(Ranges(data), size=len(data)) == result
    assert careful_calls == []
    for field, value in EXPECTED.items():
        assert getattr(result, field) == value, field


@pytest.mark.parametrize(
    ("transfer_syntax", "alone"),
    [
        (ExplicitVRLittleEndian, True),
        (ImplicitVRLittleEndian, True),
        (ExplicitVRBigEndian, True),
        (DeflatedExplicitVRLittleEndian, False),
    ],
)
def test_it_leaves_deflate_to_the_careful_reader_at_no_extra_get(
    careful_calls: list[int], transfer_syntax: str, alone: bool
) -> None:
    data = build(transfer_syntax)
    careful, fast = Ranges(data), Ranges(data)
    expected = read_header(careful, size=len(data))
    careful_calls.clear()
    assert read_header_fast(fast, size=len(data)) == expected
    assert (careful_calls == []) is alone
    assert fast.asked == careful.asked


def test_a_header_longer_than_the_first_read_costs_the_same_gets() -> None:
    data = build(ExplicitVRLittleEndian, before_patient=b"\x01" * 20_000)
    result = both(data, 8192)
    assert (result.status, result.requests) == ("ok", 2)


def encoded_with(**attributes: Any) -> bytes:
    ds = ct_image()
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("attributes", "field", "value"),
    [
        # pydicom decodes these; the fast path must not guess.
        ({"SpecificCharacterSet": "ISO_IR 144", "PatientName": "Иванов^Иван"}, "patient_name", "Иванов^Иван"),
        ({"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Müller^Jürgen"}, "patient_name", "Müller^Jürgen"),
        ({"SpecificCharacterSet": "ISO_IR 192", "StudyDescription": "胸部 CT"}, "study_description", "胸部 CT"),
        ({"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "Yamada^Tarou=山田^太郎"}, "patient_name", "Yamada^Tarou=山田^太郎"),
        ({"PatientName": "Doe^Jane=Doe^J"}, "patient_name", "Doe^Jane=Doe^J"),
        ({"Modality": ["CT", "PT"]}, "modality", "CT\\PT"),
        ({"SeriesNumber": "12.0"}, "series_number", 12),
        ({"InstanceNumber": " 7"}, "instance_number", 7),
        ({"SeriesDescription": "  padded  "}, "series_description", "  padded"),
        ({"AccessionNumber": ""}, "accession_number", None),
    ],
)  # fmt: skip
def test_odd_values_and_character_sets_decode_as_pydicom_decodes_them(
    attributes: dict[str, Any], field: str, value: Any
) -> None:
    data = encoded_with(**attributes)
    result = both(data, 16384)
    assert getattr(result, field) == value
