"""How a tag is written in messages and what the data dictionary says of it.

Every message the app shows about an attribute names it the same way: `(0008,103E)` where only the position
matters (the header reader, which reports where bytes end), `SeriesDescription (0008,103E)` everywhere a person
has to find the attribute. One helper for each keeps the wording identical across the scanner, the DICOM JSON
checks, the mapping rules, the draft preview and the metadata editor.
"""

from __future__ import annotations

import re

from pydicom.datadict import dictionary_VR, keyword_for_tag

# A tag as DICOM JSON writes it, as an attribute key and as an AT value (PS3.18 F.2): 8 uppercase hex digits.
TAG_KEY_RE = re.compile(r"[0-9A-F]{8}")


def tag_pair(tag: int) -> str:
    """'(0008,103E)': group and element in uppercase hex."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def tag_label(tag: int) -> str:
    """'SeriesDescription (0008,103E)', or '(0009,1001)' for a tag without a keyword."""
    keyword = keyword_for_tag(tag)
    pair = tag_pair(tag)
    return f"{keyword} {pair}" if keyword else pair


def tag_keyword(tag: int) -> str:
    """'SeriesDescription' for 0x0008103E; "" for a tag the dictionary does not name."""
    return str(keyword_for_tag(tag) or "")


def dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR for a tag ("US or SS" for some), or None for private and unknown tags."""
    if (tag >> 16) % 2:
        return None  # private: no dictionary to hold it to
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None
