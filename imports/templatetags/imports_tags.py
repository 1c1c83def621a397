from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from imports.dicom.patient import ValueMask, mask_value
from imports.dicom.uids import uid_problem
from imports.units import bytes_format

register = template.Library()


@register.filter(name="bytes")
def bytes_filter(value: int | None) -> str:
    """A size in decimal units (imports.units), the one convention of every page, CSV and the CLI."""
    return bytes_format(value)


@register.filter
def key_wrap(value: str | None) -> SafeString:
    """An S3 key or URI that may wrap after a "/" and nowhere else.

    Each segment is kept whole (nowrap) and a <wbr> after each "/" is the only break opportunity,
    so "incoming/p1/referral-letter.pdf" never breaks at the hyphen or mid-name.
    """
    parts = (value or "").split("/")
    segments = [f"{part}/" for part in parts[:-1]] + [parts[-1]]
    return mark_safe(
        "<wbr>".join(
            f'<span class="seg">{escape(segment)}</span>'
            for segment in segments
            if segment
        )
    )


@register.filter
def lookup(mapping: Mapping[str, Any] | None, key: str | None) -> Any:
    """mapping[key], or None: `{{ current|lookup:check.info.keyword }}`."""
    return mapping.get(key or "") if mapping else None


@register.filter
def mask(value: str | None) -> str:
    """Mask a patient name or ID, keeping the first letter of each word: "DOE^JOHN" -> "D*** J***"."""
    return mask_value(value)


@register.filter
def masked(value: str | None, key_mask: ValueMask | None) -> str:
    """A key or message with the patient values of `key_mask` masked (imports.views.common.key_mask)."""
    return key_mask(value) if key_mask else (value or "")


@register.filter
def is_uid(value: str | None) -> bool:
    """Whether a value a file names as a UID is one: a value that is not may be anything, a name included."""
    return uid_problem(value or "") is None


@register.filter
def person_name(value: str | None) -> str:
    """DICOM PN "DOE^JOHN" as "DOE, JOHN" for reading."""
    parts = [p for p in (value or "").split("=")[0].split("^") if p]
    return ", ".join(parts[:2]) + ("" if len(parts) <= 2 else " " + " ".join(parts[2:]))


@register.filter
def dicom_date(value: str | None) -> str:
    """DICOM DA "20240102" as "2024-01-02"; anything else unchanged."""
    if value and re.fullmatch(r"\d{8}", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or ""


TRANSFER_SYNTAX_NAMES = {
    "1.2.840.10008.1.2": "Implicit VR LE",
    "1.2.840.10008.1.2.1": "Explicit VR LE",
    "1.2.840.10008.1.2.1.99": "Deflated explicit VR LE",
    "1.2.840.10008.1.2.2": "Explicit VR BE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless",
    "1.2.840.10008.1.2.5": "RLE lossless",
}


@register.filter
def transfer_syntax(uid: str) -> str:
    return TRANSFER_SYNTAX_NAMES.get(uid, uid or "none")


@register.filter
def percent_of(value: int, limit: int) -> int:
    """How much of a limit a value uses, in percent, capped at 100 for progress bars."""
    if not limit:
        return 0
    return min(100, round(100 * value / limit))


@register.filter
def duration(value: timedelta | None) -> str:
    """A step's length in words: “42 s”, “3 min 5 s”, “2 h 10 min”."""
    if value is None:
        return ""
    seconds = max(0, round(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
