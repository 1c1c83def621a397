"""Patient values on pages and in exports: which attributes are masked, the mask, and keys that carry such values.

Pure: no Django. Pages show a patient name or ID masked ("D*** J***") until an audited reveal; S3 keys and
messages that carry a patient value the scan knows (many PACS exports name a folder per patient) are masked the
same way for those who may not reveal (`ValueMask`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The Patient module's group: names, IDs, birth date, address, ...
PATIENT_GROUP = 0x0010
# Shorter values ("1", "F") would mask half of every key; a 3-character ID in a key passes through.
MASKED_MIN_LENGTH = 4


def is_patient_attribute(tag: int, vr: str) -> bool:
    """Whether pages mask this attribute's value until an audited reveal: the patient group, and every person name."""
    return tag >> 16 == PATIENT_GROUP or vr == "PN"


def mask_value(value: str | None) -> str:
    """A patient name or ID masked, keeping the first letter of each word: "DOE^JOHN" -> "D*** J***".

    >>> mask_value("DOE^JOHN")
    'D*** J***'
    >>> mask_value("PAT-0042")
    'P***'
    >>> mask_value("")
    ''
    """
    # Only the alphabetic group of a PN: one ideographic character is much of a name.
    alphabetic = (value or "").split("=")[0]
    words = [w for w in re.split(r"[\\^\s]+", alphabetic) if w]
    if not words:
        return "***" if (value or "").strip("=^ ") else ""
    return " ".join(f"{w[0]}***" for w in words)


def _spellings(value: str) -> set[str]:
    """How a value may be written in a key: as it is, and a PN with its carets as "_", " " or "-"."""
    text = value.split("=")[0].strip().rstrip("^")
    forms = {text}
    if "^" in text:
        forms |= {text.replace("^", sep) for sep in ("_", " ", "-", "")}
    return {form for form in forms if len(form) >= MASKED_MIN_LENGTH}


class ValueMask:
    """Masks known patient values wherever one stands whole in a text: a key segment, a file name's stem, a word.

    "Whole" means not inside a longer run of letters and digits: with DEMO0001 known,
    `incoming/DEMO0001/1.dcm` -> `incoming/D***/1.dcm` and `DEMO0001_ct.json` -> `D***_ct.json`, but
    `XDEMO00012` is kept. Case does not matter. An empty mask (`ValueMask()`) changes nothing.
    """

    # A template passes the mask to a filter; it must not call it for its value.
    do_not_call_in_templates = True

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if value:
                forms |= _spellings(value)
        alternatives = sorted(forms, key=len, reverse=True)
        self._re = (
            re.compile(
                r"(?<![^\W_])(?:"
                + "|".join(map(re.escape, alternatives))
                + r")(?![^\W_])",
                re.IGNORECASE,
            )
            if alternatives
            else None
        )

    def __bool__(self) -> bool:
        return self._re is not None

    def __call__(self, text: str | None) -> str:
        if not text or self._re is None:
            return text or ""
        return self._re.sub(lambda m: mask_value(m.group(0)), text)
