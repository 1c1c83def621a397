"""Read DICOM headers through ranged GETs, without Django or boto3.

`read_header` parses only the bytes it has fetched. pydicom returns a partial dataset, and even a truncated value,
when its input ends early, so every parse here goes through `_View`, a file-like object that raises
`_NeedMoreBytes` instead of returning short reads while the object is longer than what was fetched. The reader then
fetches the missing range and parses again. Values are never taken from a parse that ran out of bytes.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from typing import Literal

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

# _read_file_meta_info is private, but read_partial inflates a deflated body with one read() to the end, which
# a ranged reader cannot serve; reading the meta alone lets this module take over where the dataset starts.
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import VR

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
_UID_FIELDS = frozenset(
    {"sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid"}
)
_INT_FIELDS = frozenset({"series_number", "instance_number"})

# Beyond this many fetches something is pathological (thousands of huge private elements); give up politely.
_MAX_ROUNDS = 64
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

_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")


def uid_problem(uid: str) -> str | None:
    """Say what is wrong with a DICOM UID (PS3.5 §9.1), or return None when it is valid."""
    if uid == "":
        return "UID is empty"
    if len(uid) > 64:
        return f"UID is {len(uid)} characters long; the maximum is 64"
    if _UID_RE.match(uid):
        return None
    bad = sorted({c for c in uid if c not in "0123456789."})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"UID contains {shown}; only digits 0-9 and '.' are allowed"
    if uid.startswith("."):
        return "UID starts with '.'; it must start with a digit"
    if uid.endswith("."):
        return "UID ends with '.'; it must end with a digit"
    for component in uid.split("."):
        if component == "":
            return "UID has an empty component ('..'); components are separated by a single '.'"
        if len(component) > 1 and component.startswith("0"):
            return f"UID component '{component}' has a leading zero; only the component '0' may start with 0"
    return "UID is not a valid DICOM UID"  # pragma: no cover - every failing case is named above


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


class _NeedMoreBytes(Exception):
    """The parse needs bytes [start, end) that have not been fetched yet."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"need bytes {start}-{end}")
        self.start = start
        self.end = end


class _Stop(Exception):
    """Ends read_header with a final status; raised from anywhere inside the parse."""

    def __init__(self, status: Status, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class _FetchFailed(Exception):
    """Carries an exception raised by `fetch` past the catch-all, so transport errors reach the caller."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _Cut(Exception):
    """The object itself ends inside a read; raised at once so pydicom never decodes half a value."""


class _Store:
    """Fetched byte ranges of one object, kept sorted and merged so no byte is fetched twice."""

    def __init__(self) -> None:
        self.segments: list[tuple[int, bytes]] = []

    def add(self, start: int, data: bytes) -> None:
        pieces = sorted([*self.segments, (start, data)], key=lambda s: s[0])
        merged: list[tuple[int, bytes]] = []
        for seg_start, seg_data in pieces:
            if merged and seg_start <= merged[-1][0] + len(merged[-1][1]):
                prev_start, prev_data = merged[-1]
                overlap = prev_start + len(prev_data) - seg_start
                merged[-1] = (prev_start, prev_data + seg_data[overlap:])
            else:
                merged.append((seg_start, seg_data))
        self.segments = merged

    def covered_end(self, pos: int) -> int:
        """End of the fetched run that contains pos, or pos itself when pos was not fetched."""
        for seg_start, seg_data in self.segments:
            if seg_start <= pos < seg_start + len(seg_data):
                return seg_start + len(seg_data)
        return pos

    def next_start(self, pos: int) -> int | None:
        return next((s for s, _ in self.segments if s > pos), None)

    def get(self, pos: int, n: int) -> bytes:
        for seg_start, seg_data in self.segments:
            if seg_start <= pos < seg_start + len(seg_data):
                return seg_data[pos - seg_start : pos - seg_start + n]
        return b""


class _View:
    """Read-only file-like over fetched bytes, honest about what it does not have.

    `end` is where the object (or inflated stream) really ends, or None while that is unknown. Reads inside
    fetched bytes succeed; reads that would cross into unfetched bytes raise _NeedMoreBytes; reads at the real end
    return short, as a file does, so pydicom can see end-of-file.
    """

    def __init__(
        self,
        read_at: Callable[[int, int], bytes],
        available: Callable[[int], int],
        end: int | None,
        segments: list[tuple[int, bytes]] | None = None,
    ):
        self._read_at = read_at
        self._available = available
        # The fetched runs as they were when the view was made: pydicom reads a few bytes at a time,
        # a few hundred times per header, and slicing them here directly halves the parse time.
        self._segments = segments or []
        self.end = end
        self.pos = 0
        self.need: _NeedMoreBytes | None = None
        # (position, size) of the first read cut short by the real end: the object ends inside something.
        self.cut: tuple[int, int] | None = None
        self.raise_on_cut = True

    def available_from(self, pos: int) -> int:
        return self._available(pos)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0 and self.end is not None:
            pos = self.pos
            want_end = pos + size
            if want_end <= self.end:
                for seg_start, seg_data in self._segments:
                    if seg_start <= pos and want_end <= seg_start + len(seg_data):
                        self.pos = want_end
                        return seg_data[pos - seg_start : want_end - seg_start]
        if size is None or size < 0:
            if self.end is None:
                self._raise_need(self.pos, self.pos + 1)
            size = max(0, (self.end or 0) - self.pos)
        want_end = self.pos + size
        if self.end is not None:
            if self.pos >= self.end:
                return b""
            want_end = min(want_end, self.end)
        if self._available(self.pos) < want_end:
            self._raise_need(self.pos, want_end)
        data = self._read_at(self.pos, want_end - self.pos)
        # pydicom reads undefined-length values in 8 KiB chunks, where a short last chunk is normal.
        if 0 < len(data) < size < 8192 and self.cut is None:
            self.cut = (self.pos, size)
            if self.raise_on_cut:
                self.pos += len(data)
                raise _Cut()
        self.pos += len(data)
        return data

    def _raise_need(self, start: int, end: int) -> None:
        # Remembered because pydicom turns some exceptions into OSError on the way up (read_sequence_item).
        self.need = _NeedMoreBytes(start, end)
        raise self.need

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        elif self.end is not None:
            self.pos = self.end + offset
        else:
            self._raise_need(self.pos, self.pos + 1)
        return self.pos

    def tell(self) -> int:
        return self.pos


@dataclass
class _Last:
    tag: int
    value_pos: int
    length: int


class _Tracker:
    """The stop_when callback: remembers the element being read, and decides where the header ends."""

    def __init__(self, view: _View, to_pixel_data: bool) -> None:
        self.view = view
        self.to_pixel_data = to_pixel_data
        self.last: _Last | None = None
        self.stopped: Literal["", "pixel_data", "early"] = ""

    def __call__(self, tag: BaseTag, vr: str | None, length: int) -> bool:
        pos = self.view.tell()
        tag_value = int(tag)
        self.last = _Last(tag_value, pos, length)
        if tag_value in PIXEL_DATA_TAGS:
            self.stopped = "pixel_data"
            return True
        # Walk on to the pixel data only while it is free; every wanted attribute is already read.
        if (
            not self.to_pixel_data
            and tag_value > LAST_WANTED_TAG
            and (
                length == UNDEFINED_LENGTH
                or self.view.available_from(pos) < pos + length + 12
            )
        ):
            self.stopped = "early"
            return True
        return False


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


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


def _lenient_encoding(head: bytes) -> tuple[bool, bool] | None:
    if len(head) < 8:
        return None
    if head[4:6] in _VR_CODES:
        # pydicom's heuristic: a big endian group below 0x0400 reads as 1024 or more in little endian.
        (group,) = struct.unpack("<H", head[:2])
        return (False, group < 1024)
    return (True, True)


class _Session:
    def __init__(
        self,
        fetch: Fetch,
        size: int,
        first_read: int,
        max_header: int,
        to_pixel_data: bool,
    ) -> None:
        self.fetch = fetch
        self.size = size
        self.margin = max(first_read, 1024)
        self.max_header = max_header
        self.to_pixel_data = to_pixel_data
        self.store = _Store()
        self.bytes_read = 0
        self.requests = 0
        self.has_dicm = False
        # Deflate state survives between rounds so each fetched compressed byte is inflated once.
        self.inflater: zlib._Decompress | None = None
        self.inflated = bytearray()
        self.fed_to = 0
        self.pending_tail = b""

    def get(self, start: int, stop: int) -> None:
        """One ranged GET of [start, stop)."""
        try:
            data = self.fetch(start, stop - 1)
        except Exception as exc:
            raise _FetchFailed(exc) from exc
        self.requests += 1
        self.bytes_read += len(data)
        if not data:
            raise _Stop(
                "unreadable",
                f"Ranged read at byte {start:,} returned no data; the object is shorter than listed",
            )
        self.store.add(start, data[: stop - start])

    def fetch_for(self, need: _NeedMoreBytes) -> None:
        if need.end > self.max_header:
            raise _Stop(
                "unreadable",
                f"Header runs past the {self.max_header:,}-byte limit (parsing needed byte {need.end:,}) "
                "without reaching the pixel data",
            )
        begin = self.store.covered_end(need.start)
        stop = min(self.size, max(need.end, begin + 1) + self.margin)
        following = self.store.next_start(begin)
        if following is not None and following >= need.end:
            stop = min(stop, following)
        self.get(begin, stop)

    def object_view(self) -> _View:
        return _View(
            self.store.get, self.store.covered_end, self.size, self.store.segments
        )

    def parse(self) -> HeaderRead:
        view = self.object_view()
        try:
            return self._parse(view)
        except (_Stop, _NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            raise

    def _parse(self, view: _View) -> HeaderRead:
        try:
            # A short preamble only means "no preamble".
            view.raise_on_cut = False
            preamble = read_preamble(view, force=True)  # type: ignore[arg-type]
            self.has_dicm = preamble is not None
            view.cut = None
            view.raise_on_cut = True
            meta = _read_file_meta_info(view)  # type: ignore[arg-type]
        except (_Stop, _NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            if view.cut is not None:
                raise _Stop(
                    "unreadable", _cut_message(view, None, "the file meta information")
                ) from exc
            raise _Stop(
                *self._no_dataset(f"file meta information is corrupt ({exc})")
            ) from exc
        if view.need is not None:
            raise view.need
        if view.cut is not None:
            raise _Stop(
                "unreadable", _cut_message(view, None, "the file meta information")
            )
        for tag in list(meta.keys()):
            _check_complete(meta, tag, "byte")
        ds_start = view.tell()
        group_length = meta.get("FileMetaInformationGroupLength")
        meta_end = (
            144 + group_length if self.has_dicm and isinstance(group_length, int) else 0
        )
        if ds_start >= self.size and len(meta) > 0:
            if ds_start < meta_end or "TransferSyntaxUID" not in meta:
                raise _Stop(
                    "unreadable",
                    f"File ends inside the file meta information at byte {self.size:,}",
                )
            raise _Stop(
                "unreadable",
                f"File ends at byte {self.size:,}, right after the file meta information",
            )
        ts_raw = meta.get("TransferSyntaxUID")
        ts = str(ts_raw).rstrip("\0 ") if ts_raw is not None else None
        has_meta = len(meta) > 0

        if ts == DeflatedExplicitVRLittleEndian:
            return self._parse_deflated(ds_start, has_meta, ts)

        if ts:
            uid = UID(ts)
            if uid.is_transfer_syntax:
                implicit, little = uid.is_implicit_VR, uid.is_little_endian
            else:
                # pydicom's rule too: anything unrecognised (private or compressed) is explicit VR little endian.
                implicit, little = False, True
        else:
            if ds_start >= self.size:
                raise _Stop(*self._no_dataset("nothing follows it"))
            head = view.read(12)
            view.seek(ds_start)
            # With file meta present the object is DICOM for sure, so guess the encoding as pydicom does; without
            # it only a convincing group 0008 start counts.
            guess = (
                _lenient_encoding(head)
                if has_meta
                else raw_dataset_encoding(head, self.size)
            )
            if guess is None:
                raise _Stop(*self._no_dataset("no recognisable dataset"))
            implicit, little = guess
        return self._parse_dataset(
            view, ds_start, implicit, little, has_meta, ts, inflated=False
        )

    def _no_dataset(self, why: str) -> tuple[Status, str]:
        if self.has_dicm:
            return "unreadable", f"Not readable as DICOM: DICM prefix present but {why}"
        return (
            "not_dicom",
            "Not a DICOM file: no DICM prefix and no recognisable dataset",
        )

    def _parse_dataset(
        self,
        view: _View,
        ds_start: int,
        implicit: bool,
        little: bool,
        has_meta: bool,
        ts: str | None,
        *,
        inflated: bool,
    ) -> HeaderRead:
        where = "inflated byte" if inflated else "byte"
        tracker = _Tracker(view, self.to_pixel_data)
        try:
            ds = read_dataset(
                view,  # type: ignore[arg-type]
                implicit,
                little,
                stop_when=tracker,
                specific_tags=[BaseTag(t) for t in WANTED_TAGS.values()],
            )
        except (_Stop, _NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            if view.cut is not None:
                last_tag = tracker.last.tag if tracker.last else None
                raise _Stop(
                    "unreadable",
                    _cut_message(
                        view, last_tag, "the first element of the dataset", where
                    ),
                ) from exc
            inside = (
                f" inside element {_tag_str(tracker.last.tag)}" if tracker.last else ""
            )
            raise _Stop("unreadable", f"Dataset is corrupt{inside}: {exc}") from exc
        if view.need is not None:
            raise view.need
        if view.cut is not None:
            last_tag = tracker.last.tag if tracker.last else None
            raise _Stop(
                "unreadable",
                _cut_message(view, last_tag, "the first element of the dataset", where),
            )

        end = view.end if view.end is not None else view.tell()
        header_length: int | None
        if tracker.stopped == "pixel_data":
            header_length = view.tell()
        elif tracker.stopped == "early":
            header_length = None
        else:
            last = tracker.last
            if last is not None and last.length != UNDEFINED_LENGTH:
                last_end = last.value_pos + last.length
                if last_end > end:
                    raise _Stop(
                        "unreadable",
                        f"File ends inside element {_tag_str(last.tag)} at {where} {end:,}",
                    )
                if last_end < end and end - last_end < 8:
                    raise _Stop(
                        "unreadable",
                        f"File ends inside the header of the element after {_tag_str(last.tag)} at {where} {end:,}",
                    )
            elif last is None and end > ds_start and len(ds) == 0:
                raise _Stop(*self._no_dataset("the dataset holds no elements"))
            header_length = end
        if inflated:
            header_length = None

        values: dict[str, str | int | None] = {}
        for field, tag in WANTED_TAGS.items():
            values[field] = _value(ds, tag, field, where)
        return HeaderRead(
            status="ok",
            has_file_meta=has_meta,
            transfer_syntax_uid=ts or None,
            header_length=header_length,
            bytes_read=self.bytes_read,
            requests=self.requests,
            **values,  # type: ignore[arg-type]
        )

    def _parse_deflated(self, ds_start: int, has_meta: bool, ts: str) -> HeaderRead:
        self._inflate(ds_start)
        assert self.inflater is not None
        stream_end: int | None = len(self.inflated) if self.inflater.eof else None
        compressed_end = self.store.covered_end(ds_start)
        if stream_end is None and compressed_end >= self.size:
            # Every compressed byte is in and the stream is still open: the object is cut short.
            stream_end = len(self.inflated)
        inflated = bytes(self.inflated)
        view = _View(
            lambda pos, n: inflated[pos : pos + n],
            lambda pos: len(inflated) if pos < len(inflated) else pos,
            stream_end,
        )
        try:
            return self._parse_dataset(
                view, 0, False, True, has_meta, ts, inflated=True
            )
        except _NeedMoreBytes as need:
            if need.end > self.max_header:
                raise _Stop(
                    "unreadable",
                    f"Inflated header runs past the {self.max_header:,}-byte limit without reaching the pixel data",
                ) from None
            # Guess the compressed offset from the ratio so far, with slack, rather than doubling blindly.
            consumed = max(1, compressed_end - ds_start)
            ratio = consumed / max(1, len(inflated))
            estimate = ds_start + int(need.end * ratio * 1.25) + self.margin // 4
            raise _NeedMoreBytes(
                compressed_end, max(estimate, compressed_end + 1024)
            ) from None

    def _inflate(self, ds_start: int) -> None:
        if self.inflater is None:
            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            self.fed_to = ds_start
        available = self.store.covered_end(self.fed_to)
        chunk = self.pending_tail + self.store.get(self.fed_to, available - self.fed_to)
        self.fed_to = max(self.fed_to, available)
        if self.inflater.eof or not chunk:
            return
        room = self.max_header + 1 - len(self.inflated)
        if room <= 0:
            self.pending_tail = chunk
            return
        try:
            self.inflated += self.inflater.decompress(chunk, room)
        except zlib.error as exc:
            raise _Stop("unreadable", f"Deflated dataset is corrupt: {exc}") from exc
        self.pending_tail = self.inflater.unconsumed_tail


def _cut_message(
    view: _View, last_tag: int | None, nothing_yet: str, where: str = "byte"
) -> str:
    assert view.cut is not None
    end = view.end if view.end is not None else view.pos
    pos, size = view.cut
    if size in (2, 4, 6, 8):
        after = f" after {_tag_str(last_tag)}" if last_tag is not None else ""
        return f"File ends inside an element header{after} at {where} {end:,}"
    inside = f"element {_tag_str(last_tag)}" if last_tag is not None else nothing_yet
    return f"File ends inside {inside} at {where} {end:,}"


def _check_complete(ds: Dataset, tag: int, where: str) -> None:
    raw = ds.get_item(tag)
    # Cheap insurance: a value shorter than its declared length would be a silent truncation.
    if (
        isinstance(raw, RawDataElement)
        and isinstance(raw.value, bytes)
        and raw.length != UNDEFINED_LENGTH
        and len(raw.value) != raw.length
    ):
        end = raw.value_tell + len(raw.value)
        raise _Stop(
            "unreadable", f"File ends inside element {_tag_str(tag)} at {where} {end:,}"
        )


def _value(ds: Dataset, tag: int, field: str, where: str) -> str | int | None:
    raw = ds.get_item(tag)
    if raw is None:
        return None
    _check_complete(ds, tag, where)
    try:
        elem: DataElement = ds[tag]
        value = elem.value
    except Exception:
        # A bad character set or malformed number must not lose the whole header.
        raw_bytes = raw.value if isinstance(raw, RawDataElement) else None
        if field in _INT_FIELDS or not isinstance(raw_bytes, bytes):
            return None
        return raw_bytes.decode("latin-1").rstrip("\0 ")
    if value is None or value == "":
        return None
    if field in _INT_FIELDS:
        first = value[0] if isinstance(value, MultiValue) else value
        try:
            return int(first)
        except (TypeError, ValueError):
            return None
    if isinstance(value, MutableSequence):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    if field in _UID_FIELDS:
        text = text.rstrip("\0 ")
    return text or None


def read_header(
    fetch: Fetch,
    *,
    size: int,
    first_read: int = 16384,
    max_header: int = 64 * MiB,
    to_pixel_data: bool = False,
) -> HeaderRead:
    """Read one object's DICOM header with as few ranged GETs as the header allows.

    `fetch(start, end_inclusive)` performs one ranged GET. Its exceptions propagate unchanged, so a network or
    permission error is never mistaken for a bad file; every problem with the bytes themselves comes back as a
    HeaderRead with status "unreadable" or "not_dicom" and a reason.

    With `to_pixel_data=False` (the default) reading stops at the first element after (0020,0013) when the bytes to
    go on are not fetched yet: every wanted attribute lies below it, and large private groups (0029 and the like)
    then cost no request. With True the reader always finds the pixel data, so `header_length` is always known
    except for deflated objects.
    """
    if size <= 0:
        return HeaderRead(status="unreadable", error="0-byte object")
    first: list[bytes] = []

    def fetch_and_keep_first(start: int, end: int) -> bytes:
        data = fetch(start, end)
        if not first:
            first.append(data)
        return data

    session = _Session(
        fetch_and_keep_first, size, first_read, max_header, to_pixel_data
    )
    try:
        session.get(0, min(size, max(first_read, 1)))
        if not _could_be_dicom(first[0] if first else b"", size):
            raise _Stop(
                "not_dicom",
                "Not a DICOM file: no DICM prefix and no recognisable dataset",
            )
        for _ in range(_MAX_ROUNDS):
            try:
                return session.parse()
            except _NeedMoreBytes as need:
                session.fetch_for(need)
        raise _Stop(
            "unreadable", f"Header still incomplete after {_MAX_ROUNDS} ranged reads"
        )
    except _FetchFailed as failed:
        raise failed.original from None
    except _Stop as stop:
        return HeaderRead(
            status=stop.status,
            error=stop.error,
            bytes_read=session.bytes_read,
            requests=session.requests,
        )
    except Exception as exc:
        # Anything pydicom raises that the checks above did not anticipate still belongs to this one object.
        return HeaderRead(
            status="unreadable",
            error=f"Header could not be parsed: {type(exc).__name__}: {exc}",
            bytes_read=session.bytes_read,
            requests=session.requests,
        )


def _could_be_dicom(head: bytes, size: int) -> bool:
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


__all__ = [
    "HeaderRead",
    "read_header",
    "sniff_kind",
    "uid_problem",
]


class HeaderUnavailable(Exception):
    """The header of an object cannot be shown (not DICOM, unreadable, or too large to read whole)."""


def read_header_dataset(
    fetch: Fetch, *, size: int, header_length: int | None, max_bytes: int = 16 * MiB
) -> Dataset:
    """Every attribute before the pixel data, as a pydicom Dataset, from ranged reads; never the pixel data.

    With `header_length` (the offset of the pixel data, learnt by the scan) one GET of exactly the header
    holds every element whole, so nothing can come back truncated. Without it the offset is found first with
    `read_header(..., to_pixel_data=True)`; a deflated object (whose offsets lie inside the inflated stream)
    is read whole, up to `max_bytes`.
    """
    from io import BytesIO

    from pydicom import dcmread

    if header_length is None:
        probe = read_header(fetch, size=size, to_pixel_data=True)
        if probe.status != "ok":
            raise HeaderUnavailable(probe.error or "the header could not be read")
        header_length = probe.header_length
        if header_length is None:
            if size > max_bytes:
                raise HeaderUnavailable(
                    f"a deflated object of {size:,} bytes is read whole for its header; "
                    f"the limit is {max_bytes:,} bytes"
                )
            header_length = size
    if header_length > max_bytes:
        raise HeaderUnavailable(
            f"the header is {header_length:,} bytes; headers up to {max_bytes:,} bytes are shown"
        )
    data = fetch(0, header_length - 1)
    try:
        return dcmread(BytesIO(data), stop_before_pixels=True, force=True)
    except (
        Exception
    ) as exc:  # pydicom raises many types on bad bytes; all mean the same here
        raise HeaderUnavailable(
            f"the header could not be parsed: {type(exc).__name__}"
        ) from exc
