"""The fields every form shares: a bounded whole number, the S3 URIs users type, the draft version."""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from imports.mappings.rules import prefix_problem
from imports.validators import split_s3_uri, validate_output_s3_uri, validate_s3_uri


def validate_typed_s3_uri(uri: str, *, output: bool = False) -> None:
    """An S3 URI a user typed: HealthImaging's pattern, and a prefix that stays inside itself."""
    (validate_output_s3_uri if output else validate_s3_uri)(uri)
    validate_s3_prefix(uri)


def validate_s3_prefix(uri: str) -> None:
    problem = prefix_problem(split_s3_uri(uri)[1])
    if problem is not None:
        raise ValidationError(
            "The prefix after the bucket is refused: %(problem)s. A prefix is folder names separated by "
            "“/”, such as s3://bucket/incoming/2026/.",
            code="invalid_s3_prefix",
            params={"problem": problem},
        )


# The largest id a database row can have (a 64-bit signed integer): a larger number typed into a form is
# refused by the form, never sent to the database (SQLite raises OverflowError on it).
MAX_ROW_ID = 2**63 - 1
ASCII_DIGITS = re.compile(r"[0-9]+")
ASCII_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class BoundedIntegerField(forms.IntegerField):
    """A whole number in the digits 0-9, from min_value to max_value (by default: a row id).

    Django's IntegerField takes "1.0" and "٣٤٥" and hands 5,000 digits to int(); str.isdigit() says yes to "²",
    which int() refuses. Every number a request carries (ids, versions, row numbers) comes through this field.
    """

    default_error_messages = {
        "invalid": "enter a whole number from %(min)s to %(max)s, in the digits 0-9."
    }

    def __init__(
        self, *, min_value: int = 1, max_value: int = MAX_ROW_ID, **kwargs: Any
    ) -> None:
        super().__init__(min_value=min_value, max_value=max_value, **kwargs)
        # The range is checked by to_python, with the same message as a malformed number.
        self.validators = []

    def to_python(self, value: Any) -> int | None:
        text = str(value).strip() if value is not None else ""
        if text == "":
            return None
        low, high = cast(int, self.min_value), cast(int, self.max_value)
        # The length first: int() of thousands of digits is slow, and refused past 4,300.
        ok = len(text) <= len(str(high)) and ASCII_DIGITS.fullmatch(text)
        if not ok or not low <= int(text) <= high:
            raise ValidationError(
                self.error_messages["invalid"],
                code="invalid",
                params={"min": f"{low:,}", "max": f"{high:,}"},
            )
        return int(text)


class DraftVersionForm(forms.Form):
    """Every change to a draft carries the version the user saw (see drafts._editing)."""

    version = BoundedIntegerField(label="Draft version", widget=forms.HiddenInput)
