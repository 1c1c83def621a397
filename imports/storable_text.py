"""Text every database column holds: PostgreSQL's text cannot hold U+0000, and no driver encodes a lone surrogate.

Values read from files the dashboard does not control (DICOM headers, JSON metadata, a job's result lines) can
carry either; `unstorable` says what is wrong in words (never the value: it may be patient data) and
`text_storable` puts U+FFFD in its place. No Django here.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def unstorable(text: str) -> str:
    """What in `text` no column can hold, in words ("" for nothing)."""
    found = []
    if "\x00" in text:
        found.append("a NUL character (U+0000)")
    if any("\ud800" <= c <= "\udfff" for c in text):
        found.append("a lone surrogate (half of a UTF-16 pair)")
    return " and ".join(found)


def text_storable(text: str) -> str:
    """`text` with U+FFFD for each character no column can hold."""
    if not unstorable(text):
        return text
    return "".join(
        REPLACEMENT if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text
    )
