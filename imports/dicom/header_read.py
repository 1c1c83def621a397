"""What one header read returns, and which attributes it decodes.

`HeaderRead` is the answer of both readers, the careful one (`header.read_header`) and the fast one
(`fast.read_header_fast`), which must agree field for field; `WANTED_TAGS` lists the attributes they decode, and
every other element is skipped unread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MiB = 1024 * 1024
Fetch = Callable[[int, int], bytes]
Status = Literal["ok", "unreadable", "not_dicom"]

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

# HeaderRead field -> tag. Only these values are decoded; pydicom seeks over every other element.
WANTED_TAGS: dict[str, int] = {
    "specific_character_set": 0x00080005,
    "sop_class_uid": 0x00080016,
    "sop_instance_uid": 0x00080018,
    "study_date": 0x00080020,
    "study_time": 0x00080030,
    "accession_number": 0x00080050,
    "modality": 0x00080060,
    "study_description": 0x00081030,
    "series_description": 0x0008103E,
    "patient_name": 0x00100010,
    "patient_id": 0x00100020,
    "patient_birth_date": 0x00100030,
    "patient_sex": 0x00100040,
    "study_instance_uid": 0x0020000D,
    "series_instance_uid": 0x0020000E,
    "study_id": 0x00200010,
    "series_number": 0x00200011,
    "instance_number": 0x00200013,
}
LAST_WANTED_TAG = max(WANTED_TAGS.values())
UID_FIELDS = frozenset(
    {"sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid"}
)
INT_FIELDS = frozenset({"series_number", "instance_number"})


@dataclass(frozen=True)
class HeaderRead:
    """What one object's header says, and what reading it cost.

    `header_length` is the offset of the pixel data element, or the object size when there is none. It is None
    when the reader stopped after the last wanted attribute without reaching the pixel data (only with
    `to_pixel_data=False` and only when going on would have cost another request), and for deflated objects, whose
    offsets are inside the inflated stream. `transfer_syntax_uid` is None when the file meta lacks it, even if the
    dataset's encoding could be guessed: HealthImaging rejects such files, so the caller must see it.
    """

    status: Status
    error: str = ""
    has_file_meta: bool = False
    transfer_syntax_uid: str | None = None
    specific_character_set: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    modality: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    patient_name: str | None = None
    patient_id: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_id: str | None = None
    series_number: int | None = None
    instance_number: int | None = None
    header_length: int | None = None
    bytes_read: int = 0
    requests: int = 0
