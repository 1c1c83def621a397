"""Read DICOM headers through ranged GETs, without Django or boto3.

`read_header` parses only the bytes it has fetched (`ranged_parser`, over `fetched_bytes`), fetches the range a
parse ran out at, and parses again, so no value is ever taken from a truncated read. `read_header_dataset` returns
every attribute before the pixel data as a pydicom Dataset, for the pages that show a whole header.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from imports.dicom.fetched_bytes import NeedMoreBytes
from imports.dicom.header_read import Fetch, HeaderRead, MiB
from imports.dicom.ranged_parser import FetchFailed, RangedSession, Stop
from imports.dicom.sniff import could_be_dicom

# Beyond this many fetches something is pathological (thousands of huge private elements); give up politely.
_MAX_ROUNDS = 64


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

    session = RangedSession(
        fetch_and_keep_first, size, first_read, max_header, to_pixel_data
    )
    try:
        session.get(0, min(size, max(first_read, 1)))
        if not could_be_dicom(first[0] if first else b"", size):
            raise Stop(
                "not_dicom",
                "Not a DICOM file: no DICM prefix and no recognisable dataset",
            )
        for _ in range(_MAX_ROUNDS):
            try:
                return session.parse()
            except NeedMoreBytes as need:
                session.fetch_for(need)
        raise Stop(
            "unreadable", f"Header still incomplete after {_MAX_ROUNDS} ranged reads"
        )
    except FetchFailed as failed:
        raise failed.original from None
    except Stop as stop:
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


__all__ = ["HeaderUnavailable", "read_header", "read_header_dataset"]
