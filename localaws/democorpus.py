"""The demo corpus: a small, realistic input prefix built with pydicom, byte-for-byte the same on every run.

Everything that would normally vary (UIDs, pixel noise, dates) is derived from fixed names, so S3 ETags stay
stable and `seed_demo` can skip what is already uploaded. Pure Python and pydicom; no Django.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import random
import re
import uuid
from array import array
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

INPUT_BUCKET = "demo-dicom-input"
OUTPUT_BUCKET = "demo-import-results"
INPUT_PREFIX = "incoming/"
OUTPUT_PREFIX = "jobs/"
INPUT_S3_URI = f"s3://{INPUT_BUCKET}/{INPUT_PREFIX}"
OUTPUT_S3_URI = f"s3://{OUTPUT_BUCKET}/{OUTPUT_PREFIX}"

# Paths relative to the input prefix, as a metadataFilePath is written.
STUDY_METADATA_FILE = "metadata/study-ct-chest.json"
SERIES_METADATA_FILE = "metadata/series-mr-brain-t2.json"
MALFORMED_METADATA_FILE = "metadata/study-ct-abdomen.json"
WRONG_VR_METADATA_FILE = "metadata/study-mr-knee.json"

# What the valid metadata files set: the chest study's two spellings become one; the scanner's protocol name for
# the T2 series becomes a readable description.
CANONICAL_CHEST_DESCRIPTION = "CT CHEST W CONTRAST"
VARIANT_CHEST_DESCRIPTION = "CT Chest w/ contrast"
T2_SCANNER_DESCRIPTION = "t2_tse_tra_p2"
T2_OVERRIDE_DESCRIPTION = "T2 TSE AXIAL"

THICKNESS_RE = re.compile(r"_(\d+)MM")
UID_NAMESPACE = uuid.uuid5(
    uuid.NAMESPACE_URL, "healthimaging-import-dashboard/demo-corpus/v1"
)

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
}


@dataclass(frozen=True)
class Patient:
    id: str
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class Series:
    number: int
    folder: str
    description: str
    instances: int
    transfer_syntax: str
    size: int = 64
    # Only the chest CT needs this: one of its series was sent by a station that spells the study differently.
    study_description: str | None = None
    view_position: str | None = None


@dataclass(frozen=True)
class Study:
    key: str
    patient: Patient
    modality: str
    date: str
    time: str
    accession: str
    description: str
    body_part: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class DemoObject:
    key: str
    body: bytes
    content_type: str

    @property
    def etag(self) -> str:
        """The ETag S3 gives a single-part upload: the quoted MD5 of the body."""
        return '"' + hashlib.md5(self.body, usedforsecurity=False).hexdigest() + '"'


JANE = Patient("DEMO0001", "Doe^Jane", "19640212", "F")
JOHN = Patient("DEMO0002", "Smith^John^A", "19580730", "M")
MARIA = Patient("DEMO0003", "Garcia^Maria", "19910405", "F")

STUDIES: tuple[Study, ...] = (
    Study(
        "ct-chest", JANE, "CT", "20240304", "091500", "ACC240304001",
        CANONICAL_CHEST_DESCRIPTION, "CHEST",
        (
            Series(1, "S001_TOPOGRAM", "Topogram 0.6 T20f", 2, ExplicitVRLittleEndian),
            Series(2, "S002_AXIAL_5MM", "Axial 5.0 B31f", 48, ExplicitVRLittleEndian),
            Series(
                3, "S003_AXIAL_2MM_LUNG", "Axial 2.0 B70f lung", 40, ImplicitVRLittleEndian,
                study_description=VARIANT_CHEST_DESCRIPTION,
            ),
        ),
    ),
    Study(
        "cr-chest", JANE, "CR", "20240510", "143000", "ACC240510007",
        "XR CHEST 2 VIEWS", "CHEST",
        (
            Series(1, "S001_PA", "Chest PA", 1, DeflatedExplicitVRLittleEndian, 128, view_position="PA"),
            Series(2, "S002_LAT", "Chest LAT", 1, DeflatedExplicitVRLittleEndian, 128, view_position="LL"),
        ),
    ),
    Study(
        "mr-brain", JOHN, "MR", "20231120", "081000", "ACC231120013",
        "MR BRAIN WO CONTRAST", "HEAD",
        (
            Series(1, "S001_T1_SAG", "t1_se_sag", 24, ImplicitVRLittleEndian),
            Series(2, "S002_T2_AX", T2_SCANNER_DESCRIPTION, 28, ImplicitVRLittleEndian),
            Series(3, "S003_FLAIR_AX", "t2_tirm_tra_dark-fluid", 28, ImplicitVRLittleEndian),
        ),
    ),
    Study(
        "ct-abdomen", JOHN, "CT", "20240115", "160500", "ACC240115021",
        "CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN",
        (
            Series(2, "S002_AXIAL_5MM", "Axial 5.0 B30f", 50, ExplicitVRLittleEndian),
            Series(3, "S003_CORONAL_3MM", "Coronal 3.0 MPR", 40, ExplicitVRLittleEndian),
        ),
    ),
    Study(
        "mr-knee", MARIA, "MR", "20240202", "111500", "ACC240202004",
        "MR KNEE LEFT WO CONTRAST", "KNEE",
        (
            Series(1, "S001_PD_SAG", "pd_tse_fs_sag", 20, ExplicitVRLittleEndian),
            Series(2, "S002_T1_COR", "t1_tse_cor", 20, DeflatedExplicitVRLittleEndian),
        ),
    ),
)  # fmt: skip


def demo_uid(*names: str) -> str:
    """A 2.25 UID from a name-based UUID, so the corpus gets the same UIDs on every machine and every run."""
    # pydicom's generate_uid ignores its entropy sources when prefix is None, so it cannot be used here.
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '/'.join(names)).int}"


def study_uid(study: Study) -> str:
    return demo_uid("study", study.key)


def series_uid(study: Study, series: Series) -> str:
    return demo_uid("series", study.key, str(series.number))


def study_by_key(key: str) -> Study:
    return next(s for s in STUDIES if s.key == key)


@functools.cache
def build_corpus() -> tuple[DemoObject, ...]:
    """Every object of the demo input prefix, keys sorted."""
    objects = [obj for study in STUDIES for obj in _study_objects(study)]
    objects += _metadata_objects()
    objects += _non_dicom_objects()
    return tuple(sorted(objects, key=lambda o: o.key))


def _study_objects(study: Study) -> list[DemoObject]:
    objects = []
    for series in study.series:
        for number in range(1, series.instances + 1):
            key = (
                f"{INPUT_PREFIX}{study.patient.id}/{study.date}_{study.accession}/"
                f"{series.folder}/{number:04d}.dcm"
            )
            objects.append(
                DemoObject(
                    key, _instance_bytes(study, series, number), "application/dicom"
                )
            )
    return objects


def _instance_bytes(study: Study, series: Series, number: int) -> bytes:
    patient = study.patient
    sop_class = SOP_CLASS[study.modality]
    sop_uid = demo_uid("instance", study.key, str(series.number), str(number))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(series.transfer_syntax)

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY", "AXIAL"]
        if study.modality == "CT"
        else ["ORIGINAL", "PRIMARY"]
    )
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = study.time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = ds.ContentTime = (
        f"{int(study.time[:2]):02d}{30 + series.number:02d}00"
    )
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    ds.Manufacturer = "DEMO MEDICAL"
    ds.InstitutionName = "Demo General Hospital"
    ds.ReferringPhysicianName = "Welby^Marcus"
    ds.StationName = f"{study.modality}DEMO{series.number}"
    ds.StudyDescription = series.study_description or study.description
    ds.SeriesDescription = series.description
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{int(study.date[:4]) - int(patient.birth_date[:4]):03d}Y"
    ds.BodyPartExamined = study.body_part
    ds.StudyInstanceUID = study_uid(study)
    ds.SeriesInstanceUID = series_uid(study, series)
    ds.StudyID = study.accession[-3:]
    ds.SeriesNumber = series.number
    ds.InstanceNumber = number
    if study.modality == "CR":
        ds.ViewPosition = series.view_position or ""
        ds.PatientOrientation = (
            ["A", "F"] if series.view_position == "PA" else ["P", "F"]
        )
    else:
        thickness = (
            float(match[1]) if (match := THICKNESS_RE.search(series.folder)) else 3.0
        )
        location = round((number - 1) * thickness - 100.0, 2)
        ds.FrameOfReferenceUID = demo_uid("frame", study.key)
        ds.PositionReferenceIndicator = ""
        ds.SliceThickness = thickness
        ds.ImagePositionPatient = [-160.0, -160.0, location]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = location
    if study.modality == "CT":
        ds.KVP = 120
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
    if study.modality == "MR":
        ds.MagneticFieldStrength = 1.5
        ds.RepetitionTime = 4000.0 if "T2" in series.folder else 500.0
        ds.EchoTime = 100.0 if "T2" in series.folder else 12.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = series.size
    ds.PixelSpacing = [round(320 / series.size, 4)] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(
        series.size,
        seed=f"{study.key}/{series.number}/{number}",
        position=(number - 0.5) / series.instances,
    )
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@functools.cache
def _distance_grid(size: int) -> tuple[float, ...]:
    centre = (size - 1) / 2
    return tuple(
        math.hypot(row - centre, col - centre) / centre
        for row in range(size)
        for col in range(size)
    )


def _pixels(size: int, *, seed: str, position: float) -> bytes:
    """A phantom: a body disc, an organ that grows and shrinks through the series, and seeded noise."""
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8]))
    noise = rng.randbytes(size * size)
    organ = 0.15 + 0.35 * math.sin(math.pi * position)
    values = array(
        "H",
        (
            (1450 if d < organ else 1000 if d < 0.9 else 24) + (n & 0x3F)
            for d, n in zip(_distance_grid(size), noise, strict=True)
        ),
    )
    # DICOM pixel data is little endian; array uses the machine's order.
    if array("H", [1]).tobytes() != b"\x01\x00":
        values.byteswap()
    return values.tobytes()


def _dicom_json(attributes: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    return {
        tag: {"vr": vr, "Value": [value]} for tag, (vr, value) in attributes.items()
    }


def _json_object(key: str, document: Any) -> DemoObject:
    body = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    return DemoObject(INPUT_PREFIX + key, body, "application/json")


def _metadata_objects() -> list[DemoObject]:
    chest = study_by_key("ct-chest")
    brain = study_by_key("mr-brain")
    knee = study_by_key("mr-knee")
    t2 = brain.series[1]
    # The valid files repeat the UIDs they are meant for (allowed: unchanged protected attributes), so a script
    # can build its mappings from the files themselves.
    study_file = _dicom_json(
        {
            "0020000D": ("UI", study_uid(chest)),
            "00081030": ("LO", CANONICAL_CHEST_DESCRIPTION),
        }
    )
    series_file = _dicom_json(
        {
            "0020000D": ("UI", study_uid(brain)),
            "0020000E": ("UI", series_uid(brain, t2)),
            "0008103E": ("LO", T2_OVERRIDE_DESCRIPTION),
        }
    )
    # StudyDescription is LO; PN is the mistake people make after copying a PatientName entry.
    wrong_vr = {
        "0020000D": {"vr": "UI", "Value": [study_uid(knee)]},
        "00081030": {"vr": "PN", "Value": [{"Alphabetic": "MR KNEE LEFT"}]},
    }
    malformed = (
        b'{\n  "00081030": {\n    "vr": "LO",\n    "Value": ["CT ABDOMEN PELVIS W CONTRAST"]\n  },\n'
        b'  "00080050": {"vr": "SH", "Value": ["ACC240115021"]\n'
    )
    return [
        _json_object(STUDY_METADATA_FILE, study_file),
        _json_object(SERIES_METADATA_FILE, series_file),
        _json_object(WRONG_VR_METADATA_FILE, wrong_vr),
        DemoObject(
            INPUT_PREFIX + MALFORMED_METADATA_FILE, malformed, "application/json"
        ),
    ]


def _non_dicom_objects() -> list[DemoObject]:
    readme = (
        b"Sent along with the DEMO0001 studies by the referring clinic.\n"
        b"These files are not DICOM; an import reports each of them as a failure.\n"
    )
    pdf = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )
    rng = random.Random(20240304)
    jpeg = (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + rng.randbytes(2048)
        + b"\xff\xd9"
    )
    return [
        DemoObject(f"{INPUT_PREFIX}misc/notes/readme.txt", readme, "text/plain"),
        DemoObject(
            f"{INPUT_PREFIX}misc/attachments/referral-letter.pdf",
            pdf,
            "application/pdf",
        ),
        DemoObject(
            f"{INPUT_PREFIX}misc/attachments/photos/wound-photo.jpg",
            jpeg,
            "image/jpeg",
        ),
    ]
