"""What a spreadsheet does to a cell, named: dates and numbers where text belongs, invisible characters.

Pure: no Django. `cell_text` returns the cell as text, or a code and a message saying what is wrong and what is
allowed; it never repairs a value (a day/month swap or a lost leading zero is a guess about a patient's data).
Messages quote no patient value.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from imports.editor.rows import FLOAT_VRS, INT_VRS

NUMBER_VRS = INT_VRS | FLOAT_VRS | {"IS", "DS"}
# Characters a spreadsheet or a copy from a web page leaves behind, which look like a space or like nothing.
INVISIBLE = {
    "\u00a0": "a non-breaking space (U+00A0)",
    "\u2007": "a figure space (U+2007)",
    "\u202f": "a narrow non-breaking space (U+202F)",
    "\u200b": "a zero-width space (U+200B)",
    "\u2060": "a word joiner (U+2060)",
    "\ufeff": "a byte order mark (U+FEFF)",
}
_SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+")
_FLOAT_ZERO = re.compile(r"[+-]?\d+\.0+")
_SERIAL = re.compile(r"\d{1,6}")
_SEPARATED_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_SPREADSHEET_EPOCH = datetime.date(1899, 12, 30)


def cell_text(
    raw: Any, *, vr: str, patient: bool
) -> tuple[str, tuple[str, str] | None]:
    """The cell as text, or (code, what is wrong and what is allowed) for what a spreadsheet did to it."""
    shown = "the value" if patient else None
    if isinstance(raw, bool):
        return "", (
            "spreadsheet_boolean",
            "the cell holds TRUE or FALSE, not text: type the value as text.",
        )
    if isinstance(raw, (datetime.date, datetime.time)):
        return "", (
            "spreadsheet_date",
            "the cell holds a spreadsheet date or time, not text: format the column as Text and type the value "
            "(DA is YYYYMMDD, such as 20240131; TM is HHMMSS).",
        )
    if isinstance(raw, int):
        if vr not in NUMBER_VRS and abs(raw) >= 10**15:
            return "", (
                "number_digits_lost",
                "the cell holds a number of 16 or more digits, of which a spreadsheet keeps only 15: format the "
                "column as Text and type the value again.",
            )
        raw = str(raw)
    elif isinstance(raw, float):
        if vr in FLOAT_VRS or vr == "DS":
            return repr(raw), None
        written = f"{raw:G}" if "e" in repr(raw).lower() else repr(raw)
        kind = "in scientific notation" if "E" in written else "with a decimal point"
        return "", (
            "spreadsheet_number",
            f"the cell holds {shown or written}, a number {kind}, where {vr} takes text: format the column as "
            "Text and type the value as it should read.",
        )
    text = raw if isinstance(raw, str) else str(raw)
    if bad := invisible(text):
        return "", (
            "nonbreaking_space",
            f"the value holds {bad}; replace it with a plain space, or remove it.",
        )
    if text != text.strip():
        return "", (
            "stray_whitespace",
            "the value starts or ends with whitespace; remove it.",
        )
    shown = shown or f"'{text}'"
    if vr not in NUMBER_VRS and _SCIENTIFIC.fullmatch(text):
        return "", (
            "scientific_notation",
            f"{shown} is a long number in scientific notation, which a spreadsheet rounded: format the column "
            "as Text and type the full value.",
        )
    if vr not in FLOAT_VRS | {"DS"} and _FLOAT_ZERO.fullmatch(text):
        return "", (
            "spreadsheet_number",
            f"{shown} is a whole number a spreadsheet wrote with a decimal point; type it without '.0' "
            "(format the column as Text).",
        )
    if vr == "DA" and _SERIAL.fullmatch(text):
        day = _SPREADSHEET_EPOCH + datetime.timedelta(days=int(text))
        as_date = "" if patient else f", which a spreadsheet shows as {day:%Y-%m-%d}"
        return "", (
            "spreadsheet_date_serial",
            f"{shown} looks like a spreadsheet's date serial number{as_date}: DA is YYYYMMDD, such as "
            "20240131; format the column as Text and type the date.",
        )
    if vr == "DA" and _SEPARATED_DATE.fullmatch(text):
        return "", (
            "date_with_separators",
            f"{shown} is a date with separators: DA is YYYYMMDD, such as 20240131 (the sheet does not guess "
            "which of day and month comes first).",
        )
    return text, None


def invisible(text: str) -> str:
    for position, char in enumerate(text, start=1):
        if char in INVISIBLE:
            return f"{INVISIBLE[char]} at character {position}"
    return ""
