"""The bytes of one object fetched so far, and a file-like view over them that never pretends to have more.

pydicom returns a partial dataset, and even a truncated value, when its input ends early, so the ranged reader
parses through `FetchedView`, which raises `NeedMoreBytes` instead of returning short reads while the object is
longer than what was fetched, and `CutShort` when the object itself ends inside a read. `ByteStore` keeps the
fetched ranges merged so no byte is fetched twice.
"""

from __future__ import annotations

from collections.abc import Callable


class NeedMoreBytes(Exception):
    """The parse needs bytes [start, end) that have not been fetched yet."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"need bytes {start}-{end}")
        self.start = start
        self.end = end


class CutShort(Exception):
    """The object itself ends inside a read; raised at once so pydicom never decodes half a value."""


class ByteStore:
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


class FetchedView:
    """Read-only file-like over fetched bytes, honest about what it does not have.

    `end` is where the object (or inflated stream) really ends, or None while that is unknown. Reads inside
    fetched bytes succeed; reads that would cross into unfetched bytes raise NeedMoreBytes; reads at the real end
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
        self.need: NeedMoreBytes | None = None
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
                raise CutShort()
        self.pos += len(data)
        return data

    def _raise_need(self, start: int, end: int) -> None:
        # Remembered because pydicom turns some exceptions into OSError on the way up (read_sequence_item).
        self.need = NeedMoreBytes(start, end)
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
