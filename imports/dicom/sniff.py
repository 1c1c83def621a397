"""Telling DICOM from other objects by their first bytes, and guessing how a dataset without file meta is encoded.

The scanner classifies every object from one small read (`sniff_kind`); the ranged reader rules out files that are
plainly not DICOM before parsing (`could_be_dicom`) and, when there is no file meta, takes the dataset's encoding
from its first element (`raw_dataset_encoding`, strict; `lenient_encoding`, pydicom's guess once file meta is
present).
"""

from __future__ import annotations

import struct
from typing import Literal

from pydicom.valuerep import VR

from imports.dicom.header_read import UNDEFINED_LENGTH

_RAW_DATASET_GROUP = 0x0008
_VR_CODES = frozenset(str(v).encode() for v in VR if len(str(v)) == 2)
_LONG_LENGTH_VRS = frozenset(
    {
        b"OB",
        b"OD",
        b"OF",
        b"OL",
        b"OV",
        b"OW",
        b"SQ",
        b"SV",
        b"UC",
        b"UN",
        b"UR",
        b"UT",
        b"UV",
    }
)


def raw_dataset_encoding(
    head: bytes, size: int | None = None
) -> tuple[bool, bool] | None:
    """(is_implicit_vr, is_little_endian) when `head` plausibly starts a DICOM dataset with no file meta.

    Only a first element in group 0008 with a sane VR and length counts; anything looser turns random files into
    "DICOM" that then fails with a confusing reason.
    """
    if len(head) < 8:
        return None
    limit = size if size is not None else 1 << 32
    for endian in "<>":
        group, _elem = struct.unpack(f"{endian}HH", head[:4])
        if group != _RAW_DATASET_GROUP:
            continue
        vr = head[4:6]
        if vr in _VR_CODES:
            if vr in _LONG_LENGTH_VRS:
                if len(head) < 12 or head[6:8] != b"\0\0":
                    return None
                (length,) = struct.unpack(f"{endian}L", head[8:12])
            else:
                (length,) = struct.unpack(f"{endian}H", head[6:8])
            if length == UNDEFINED_LENGTH or length <= limit:
                return (False, endian == "<")
        elif endian == "<":
            (length,) = struct.unpack("<L", head[4:8])
            if length <= min(limit, 1 << 16) and length % 2 == 0:
                return (True, True)
    return None


def lenient_encoding(head: bytes) -> tuple[bool, bool] | None:
    if len(head) < 8:
        return None
    if head[4:6] in _VR_CODES:
        # pydicom's heuristic: a big endian group below 0x0400 reads as 1024 or more in little endian.
        (group,) = struct.unpack("<H", head[:2])
        return (False, group < 1024)
    return (True, True)


def could_be_dicom(head: bytes, size: int) -> bool:
    """False when the first bytes rule DICOM out: no DICM prefix, no file meta group, no dataset start.

    Without this, a short text file would come back as a DICOM file "cut inside an element header".
    """
    if len(head) < min(size, 132):
        return True  # too little fetched to rule anything out: let the parse decide
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if head[:2] == b"\x02\x00" or head[:2] == b"\x00\x02":
        return True
    return raw_dataset_encoding(head, size) is not None


def sniff_kind(key: str, head: bytes) -> Literal["dicom", "json", "other"]:
    """Classify an object by its name where the name tells, else by its first bytes."""
    name = key.rsplit("/", 1)[-1].lower()
    if name.endswith((".dcm", ".dicom")):
        return "dicom"
    if name.endswith(".json"):
        return "json"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if raw_dataset_encoding(head) is not None:
        return "dicom"
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if text.lstrip(b" \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return "other"
