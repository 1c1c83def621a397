"""The ranged header parse: one pass of pydicom over the bytes fetched so far, and what it means when it stops.

`RangedSession` holds one object's fetched bytes and inflater state across rounds. Each `parse()` either returns a
`HeaderRead`, raises `NeedMoreBytes` (the caller fetches that range with `fetch_for` and parses again), or raises
`Stop` with a final status and reason. Values are never taken from a parse that ran out of bytes, and every
message about a cut or corrupt object names the element and the byte where it ends.
"""

from __future__ import annotations

import zlib
from collections.abc import MutableSequence
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

from imports.dicom.fetched_bytes import ByteStore, FetchedView, NeedMoreBytes
from imports.dicom.header_read import (
    INT_FIELDS,
    LAST_WANTED_TAG,
    PIXEL_DATA_TAGS,
    UID_FIELDS,
    UNDEFINED_LENGTH,
    WANTED_TAGS,
    Fetch,
    HeaderRead,
    Status,
)
from imports.dicom.sniff import lenient_encoding, raw_dataset_encoding
from imports.dicom.tags import tag_pair


class Stop(Exception):
    """Ends read_header with a final status; raised from anywhere inside the parse."""

    def __init__(self, status: Status, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class FetchFailed(Exception):
    """Carries an exception raised by `fetch` past the catch-all, so transport errors reach the caller."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


@dataclass
class _Last:
    tag: int
    value_pos: int
    length: int


class _Tracker:
    """The stop_when callback: remembers the element being read, and decides where the header ends."""

    def __init__(self, view: FetchedView, to_pixel_data: bool) -> None:
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


class RangedSession:
    """One object's header read in progress: the bytes fetched so far, what they cost, and the inflater state."""

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
        self.store = ByteStore()
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
            raise FetchFailed(exc) from exc
        self.requests += 1
        self.bytes_read += len(data)
        if not data:
            raise Stop(
                "unreadable",
                f"Ranged read at byte {start:,} returned no data; the object is shorter than listed",
            )
        self.store.add(start, data[: stop - start])

    def fetch_for(self, need: NeedMoreBytes) -> None:
        if need.end > self.max_header:
            raise Stop(
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

    def object_view(self) -> FetchedView:
        return FetchedView(
            self.store.get, self.store.covered_end, self.size, self.store.segments
        )

    def parse(self) -> HeaderRead:
        view = self.object_view()
        try:
            return self._parse(view)
        except (Stop, NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            raise

    def _parse(self, view: FetchedView) -> HeaderRead:
        try:
            # A short preamble only means "no preamble".
            view.raise_on_cut = False
            preamble = read_preamble(view, force=True)  # type: ignore[arg-type]
            self.has_dicm = preamble is not None
            view.cut = None
            view.raise_on_cut = True
            meta = _read_file_meta_info(view)  # type: ignore[arg-type]
        except (Stop, NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            if view.cut is not None:
                raise Stop(
                    "unreadable", _cut_message(view, None, "the file meta information")
                ) from exc
            raise Stop(
                *self._no_dataset(f"file meta information is corrupt ({exc})")
            ) from exc
        if view.need is not None:
            raise view.need
        if view.cut is not None:
            raise Stop(
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
                raise Stop(
                    "unreadable",
                    f"File ends inside the file meta information at byte {self.size:,}",
                )
            raise Stop(
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
                raise Stop(*self._no_dataset("nothing follows it"))
            head = view.read(12)
            view.seek(ds_start)
            # With file meta present the object is DICOM for sure, so guess the encoding as pydicom does; without
            # it only a convincing group 0008 start counts.
            guess = (
                lenient_encoding(head)
                if has_meta
                else raw_dataset_encoding(head, self.size)
            )
            if guess is None:
                raise Stop(*self._no_dataset("no recognisable dataset"))
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
        view: FetchedView,
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
        except (Stop, NeedMoreBytes):
            raise
        except Exception as exc:
            if view.need is not None:
                raise view.need from exc
            if view.cut is not None:
                last_tag = tracker.last.tag if tracker.last else None
                raise Stop(
                    "unreadable",
                    _cut_message(
                        view, last_tag, "the first element of the dataset", where
                    ),
                ) from exc
            inside = (
                f" inside element {tag_pair(tracker.last.tag)}" if tracker.last else ""
            )
            raise Stop("unreadable", f"Dataset is corrupt{inside}: {exc}") from exc
        if view.need is not None:
            raise view.need
        if view.cut is not None:
            last_tag = tracker.last.tag if tracker.last else None
            raise Stop(
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
                    raise Stop(
                        "unreadable",
                        f"File ends inside element {tag_pair(last.tag)} at {where} {end:,}",
                    )
                if last_end < end and end - last_end < 8:
                    raise Stop(
                        "unreadable",
                        f"File ends inside the header of the element after {tag_pair(last.tag)} at {where} {end:,}",
                    )
            elif last is None and end > ds_start and len(ds) == 0:
                raise Stop(*self._no_dataset("the dataset holds no elements"))
            header_length = end
        if inflated:
            header_length = None

        values: dict[str, str | int | None] = {}
        for field, tag in WANTED_TAGS.items():
            values[field] = decode_value(ds, tag, field, where)
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
        view = FetchedView(
            lambda pos, n: inflated[pos : pos + n],
            lambda pos: len(inflated) if pos < len(inflated) else pos,
            stream_end,
        )
        try:
            return self._parse_dataset(
                view, 0, False, True, has_meta, ts, inflated=True
            )
        except NeedMoreBytes as need:
            if need.end > self.max_header:
                raise Stop(
                    "unreadable",
                    f"Inflated header runs past the {self.max_header:,}-byte limit without reaching the pixel data",
                ) from None
            # Guess the compressed offset from the ratio so far, with slack, rather than doubling blindly.
            consumed = max(1, compressed_end - ds_start)
            ratio = consumed / max(1, len(inflated))
            estimate = ds_start + int(need.end * ratio * 1.25) + self.margin // 4
            raise NeedMoreBytes(
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
            raise Stop("unreadable", f"Deflated dataset is corrupt: {exc}") from exc
        self.pending_tail = self.inflater.unconsumed_tail


def _cut_message(
    view: FetchedView, last_tag: int | None, nothing_yet: str, where: str = "byte"
) -> str:
    assert view.cut is not None
    end = view.end if view.end is not None else view.pos
    pos, size = view.cut
    if size in (2, 4, 6, 8):
        after = f" after {tag_pair(last_tag)}" if last_tag is not None else ""
        return f"File ends inside an element header{after} at {where} {end:,}"
    inside = f"element {tag_pair(last_tag)}" if last_tag is not None else nothing_yet
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
        raise Stop(
            "unreadable", f"File ends inside element {tag_pair(tag)} at {where} {end:,}"
        )


def decode_value(ds: Dataset, tag: int, field: str, where: str) -> str | int | None:
    """The HeaderRead value of one wanted attribute, as both readers decode it; None when absent or empty."""
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
        if field in INT_FIELDS or not isinstance(raw_bytes, bytes):
            return None
        return raw_bytes.decode("latin-1").rstrip("\0 ")
    if value is None or value == "":
        return None
    if field in INT_FIELDS:
        first = value[0] if isinstance(value, MultiValue) else value
        try:
            return int(first)
        except (TypeError, ValueError):
            return None
    if isinstance(value, MutableSequence):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    if field in UID_FIELDS:
        text = text.rstrip("\0 ")
    return text or None
