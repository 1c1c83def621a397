"""The fast path of `imports.dicom.header.read_header`: the common header read without pydicom's per-element objects.

Most objects a scan meets are ordinary: a preamble, an explicit VR little endian file meta, a dataset in a
standard uncompressed or encapsulated transfer syntax (explicit or implicit VR, little or big endian) whose wanted attributes and pixel data lie inside the first ranged GET, and
plain ASCII values. For those, `read_header_fast` walks the elements with `struct` over that one buffer and
decodes the handful of wanted values from their bytes. Anything else is "unusual" and goes to the careful reader
(`read_header`), which is then handed the first GET's bytes so it costs no second request for them: deflate,
no preamble or file meta, private transfer syntaxes, odd character sets or values, undefined lengths
other than well-formed sequences, elements out of order, or any byte the walk would need beyond the buffer.

The contract is equality: whenever the fast path answers, its HeaderRead is exactly what `read_header` returns
for the same object and first read (tests/dicom/test_dicomfast.py checks this on pydicom's corpus and the bench's
objects). So the fast path never decides a status other than "ok": every problem is the careful reader's.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from imports.dicom.header import read_header
from imports.dicom.header_read import (
    LAST_WANTED_TAG,
    PIXEL_DATA_TAGS,
    UNDEFINED_LENGTH,
    WANTED_TAGS,
    Fetch,
    HeaderRead,
)
from imports.dicom.ranged_parser import decode_value

_HEADER = struct.Struct("<HH2sH").unpack_from
_LONG = struct.Struct("<L").unpack_from


@dataclass(frozen=True)
class _Encoding:
    implicit: bool
    little: bool
    explicit_header: Callable[[bytes, int], tuple[int, int, bytes, int]]
    implicit_header: Callable[[bytes, int], tuple[int, int, int]]
    long_length: Callable[[bytes, int], tuple[int]]


def _encoding(implicit: bool, little: bool) -> _Encoding:
    endian = "<" if little else ">"
    return _Encoding(
        implicit,
        little,
        struct.Struct(f"{endian}HH2sH").unpack_from,
        struct.Struct(f"{endian}HHL").unpack_from,
        struct.Struct(f"{endian}L").unpack_from,
    )


_ENCODINGS = {
    (implicit, little): _encoding(implicit, little)
    for implicit in (False, True)
    for little in (False, True)
}

_LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)
# Two-letter VRs with a 2-byte length; anything else (including pydicom's "implicit VR switch" guesses) is unusual.
_SHORT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
)
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_CHARSET_TAG = 0x00080005

# The VR of each wanted attribute in the standard; a value written under another VR goes through pydicom.
_FIELD_VR: dict[str, bytes] = {
    "specific_character_set": b"CS",
    "sop_class_uid": b"UI",
    "sop_instance_uid": b"UI",
    "study_date": b"DA",
    "study_time": b"TM",
    "accession_number": b"SH",
    "modality": b"CS",
    "study_description": b"LO",
    "series_description": b"LO",
    "patient_name": b"PN",
    "patient_id": b"LO",
    "patient_birth_date": b"DA",
    "patient_sex": b"CS",
    "study_instance_uid": b"UI",
    "series_instance_uid": b"UI",
    "study_id": b"SH",
    "series_number": b"IS",
    "instance_number": b"IS",
}
_WANTED = [(field, tag, _FIELD_VR[field]) for field, tag in WANTED_TAGS.items()]
_WANTED_SET = frozenset(WANTED_TAGS.values())
# Character sets under which an ASCII value (no escape byte) decodes to the same text as in the default one.
_PLAIN_CHARSETS = frozenset({b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192"})
_PLAIN_INT = re.compile(rb" *-?[0-9]{1,15}")


class _Unusual(Exception):
    """Not the common case: the careful reader decides."""


def read_header_fast(
    fetch: Fetch, *, size: int, first_read: int = 16384, to_pixel_data: bool = False
) -> HeaderRead:
    """`read_header`'s answer, computed without pydicom when the object is ordinary.

    Same arguments and guarantees as `imports.dicom.header.read_header`: `fetch`'s exceptions propagate, and every
    problem with the bytes comes back as a status. The first GET is the one `read_header` would make.
    """
    if size <= 0:
        return read_header(
            fetch, size=size, first_read=first_read, to_pixel_data=to_pixel_data
        )
    stop = min(size, max(first_read, 1))
    first = fetch(0, stop - 1)
    try:
        return _read(first[:stop], len(first), size, to_pixel_data)
    except Exception:
        # _Unusual, or bytes the walk did not foresee: either way the careful reader judges them.
        pass
    replayed = False

    def replay(start: int, end: int) -> bytes:
        # The careful reader's first GET is this one; answer it from memory, and count it as read_header does.
        nonlocal replayed
        if not replayed and (start, end) == (0, stop - 1):
            replayed = True
            return first
        return fetch(start, end)

    return read_header(
        replay, size=size, first_read=first_read, to_pixel_data=to_pixel_data
    )


def _read(buf: bytes, fetched: int, size: int, to_pixel_data: bool) -> HeaderRead:
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _Unusual
    ds_start, ts = _file_meta(buf)
    if ds_start >= size:
        raise _Unusual
    enc = _dataset_encoding(ts)
    # pydicom reads the dataset in the encoding its first element shows, whatever the transfer syntax says.
    vr = buf[ds_start + 4 : ds_start + 6]
    if (
        len(vr) < 2
        or (not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)) != enc.implicit
    ):
        raise _Unusual
    raw: dict[int, tuple[bytes | None, int, bytes]] = {}
    header_length = _walk(buf, ds_start, enc, to_pixel_data, raw)
    values = _decode(raw, enc)
    return HeaderRead(
        status="ok",
        has_file_meta=True,
        transfer_syntax_uid=ts,
        header_length=header_length,
        bytes_read=fetched,
        requests=1,
        **values,  # type: ignore[arg-type]
    )


def _file_meta(buf: bytes) -> tuple[int, str]:
    """(where the dataset starts, the transfer syntax) from an explicit VR little endian group 0002."""
    pos = 132
    n = len(buf)
    ts = None
    while True:
        if pos + 8 > n:
            raise _Unusual
        group, elem, vr, length = _HEADER(buf, pos)
        if group != 2:
            break
        if vr in _LONG_VRS:
            (length,) = _LONG(buf, pos + 8)
            value_pos = pos + 12
        elif vr in _SHORT_VRS:
            value_pos = pos + 8
        else:
            raise _Unusual
        end = value_pos + length
        if length == UNDEFINED_LENGTH or end > n:
            raise _Unusual
        if elem == 0x0010:
            ts = _plain(buf[value_pos:end])
        pos = end
    if not ts:
        raise _Unusual
    return pos, ts.rstrip("\0 ")


@functools.cache
def _dataset_encoding(ts: str) -> _Encoding:
    uid = UID(ts)
    # Private syntaxes and deflate are the careful reader's.
    if not uid.is_transfer_syntax or uid == DeflatedExplicitVRLittleEndian:
        raise _Unusual
    return _ENCODINGS[bool(uid.is_implicit_VR), bool(uid.is_little_endian)]


def _element(
    buf: bytes, pos: int, enc: _Encoding, item: bool = False
) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, length, value position) of the element at pos; `item` reads an item tag."""
    if pos + 8 > len(buf):
        raise _Unusual
    if enc.implicit or item:
        group, elem, length = enc.implicit_header(buf, pos)
        return group << 16 | elem, None, length, pos + 8
    group, elem, vr, length = enc.explicit_header(buf, pos)
    if group == 0xFFFE:  # item and delimiter tags carry no VR, whatever the encoding
        group, elem, length = enc.implicit_header(buf, pos)
        return group << 16 | elem, None, length, pos + 8
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Unusual
        return group << 16 | elem, vr, enc.long_length(buf, pos + 8)[0], pos + 12
    if vr in _SHORT_VRS:
        return group << 16 | elem, vr, length, pos + 8
    raise _Unusual


def _is_sequence(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr == b"SQ"
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except (
        KeyError
    ):  # private or unknown: pydicom peeks at the bytes, the careful reader does it
        return False


def _walk(
    buf: bytes,
    pos: int,
    enc: _Encoding,
    to_pixel_data: bool,
    raw: dict[int, tuple[bytes | None, int, bytes]],
) -> int | None:
    """Walk the top-level elements to the pixel data; keep the wanted values; return the header length.

    Stops where the careful reader's `_Tracker` stops: at the pixel data (the header length), or, without
    `to_pixel_data`, at the first element after the last wanted one whose value plus the next element header is
    not in the buffer (None).
    """
    n = len(buf)
    previous = -1
    while True:
        start = pos
        tag, vr, length, pos = _element(buf, pos, enc)
        if tag in PIXEL_DATA_TAGS:
            return start
        if tag <= previous or tag >> 16 == 0xFFFE:
            raise _Unusual
        previous = tag
        if (
            not to_pixel_data
            and tag > LAST_WANTED_TAG
            and (length == UNDEFINED_LENGTH or pos + length + 12 > n)
        ):
            return None
        if length == UNDEFINED_LENGTH:
            if tag in _WANTED_SET or not _is_sequence(tag, vr):
                raise _Unusual
            pos = _skip_sequence(buf, pos, enc)
            continue
        end = pos + length
        if end > n:
            raise _Unusual
        if tag in _WANTED_SET:
            raw[tag] = (vr, pos, buf[pos:end])
        pos = end


def _skip_sequence(buf: bytes, pos: int, enc: _Encoding) -> int:
    """The position after an undefined-length sequence, checking its structure as pydicom would parse it."""
    while True:
        tag, _vr, length, pos = _element(buf, pos, enc, item=True)
        if tag == _SEQUENCE_END:
            if length != 0:
                raise _Unusual
            return pos
        if tag != _ITEM:
            raise _Unusual
        if length == UNDEFINED_LENGTH:
            pos = _skip_item(buf, pos, enc, None)
        else:
            pos = _skip_item(buf, pos, enc, pos + length)


def _skip_item(buf: bytes, pos: int, enc: _Encoding, end: int | None) -> int:
    if end is not None and end > len(buf):
        raise _Unusual
    while end is None or pos < end:
        tag, vr, length, pos = _element(buf, pos, enc)
        if tag == _ITEM_END:
            if end is not None or length != 0:
                raise _Unusual
            return pos
        if tag >> 16 == 0xFFFE:
            raise _Unusual
        if length == UNDEFINED_LENGTH:
            if not _is_sequence(tag, vr):
                raise _Unusual
            pos = _skip_sequence(buf, pos, enc)
            continue
        pos += length
        if pos > len(buf):
            raise _Unusual
    if pos != end:
        raise _Unusual
    return pos


def _plain(value: bytes) -> str:
    """ASCII text with no delimiter or escape: decodes to the same string under any plain character set."""
    if not value.isascii() or b"\\" in value or b"\x1b" in value:
        raise _Unusual
    return value.decode("ascii")


def _decode(
    raw: dict[int, tuple[bytes | None, int, bytes]], enc: _Encoding
) -> dict[str, str | int | None]:
    charset = raw.get(_CHARSET_TAG)
    try:
        if charset is not None and charset[2].rstrip(b" \0") not in _PLAIN_CHARSETS:
            raise _Unusual
        return {field: _decode_one(raw, tag, vr) for field, tag, vr in _WANTED}
    except _Unusual:
        # An odd value or character set: pydicom decodes all of them, exactly as in the careful reader.
        return _decode_with_pydicom(raw, enc)


def _decode_one(
    raw: dict[int, tuple[bytes | None, int, bytes]],
    tag: int,
    vr: bytes,
) -> str | int | None:
    found = raw.get(tag)
    if found is None:
        return None
    written_vr, _pos, value = found
    if written_vr is not None and written_vr != vr:
        raise _Unusual
    if vr == b"IS":
        text = value.rstrip(b" \0")
        if not text:
            return None
        if not _PLAIN_INT.fullmatch(text):
            raise _Unusual
        return int(text)
    text_value = _plain(value)
    if vr == b"PN":
        if "=" in text_value:
            raise _Unusual
        return text_value.rstrip("\0 ") or None
    return text_value.rstrip("\0 ") or None


def _decode_with_pydicom(
    raw: dict[int, tuple[bytes | None, int, bytes]], enc: _Encoding
) -> dict[str, str | int | None]:
    ds = Dataset(
        {
            BaseTag(tag): RawDataElement(
                BaseTag(tag),
                vr.decode() if vr is not None else None,
                len(value),
                value or None,
                pos,
                enc.implicit,
                enc.little,
            )
            for tag, (vr, pos, value) in raw.items()
        }
    )
    return {field: decode_value(ds, tag, field, "byte") for field, tag, _vr in _WANTED}


__all__ = ["read_header_fast"]
