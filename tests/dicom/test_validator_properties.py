"""Property-based tests: each validator accepts exactly what an independent rule accepts, and bad input
gets a validation error, never another exception."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from imports.dicom.json_model import VRS, validate_dicom_json
from imports.mappings.rules import (
    metadata_path_problem,
    uid_dicom_problem,
    uid_field_problem,
)
from imports.validators import validate_job_name, validate_s3_uri

# No example database on disk, no deadline: the machine is shared, and a slow example is not a bug.
PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _outcome(validate: Any, value: str) -> bool:
    """True when accepted; False on a ValidationError; anything else propagates and fails the test."""
    messages: list[str] = []
    try:
        validate(value)
    except ValidationError as error:
        messages = error.messages
        accepted = False
    else:
        accepted = True
    assert accepted or all(message.strip() for message in messages)
    assert accepted or messages
    return accepted


# --- UIDs -------------------------------------------------------------------------------------


def uid_oracle(value: str) -> bool:
    """PS3.5 §9.1: components of digits without leading zeros (except "0"), dot-separated, ≤ 64 chars."""
    if not 1 <= len(value) <= 64:
        return False
    components = value.split(".")
    return all(
        c != "" and all("0" <= ch <= "9" for ch in c) and (c == "0" or c[0] != "0")
        for c in components
    )


def service_uid_oracle(value: str) -> bool:
    """HealthImaging's mapping UIDs: 1 to 512 characters, each an ASCII digit or a dot."""
    return 1 <= len(value) <= 512 and all(ch in "0123456789." for ch in value)


uid_like = st.lists(
    st.one_of(st.integers(0, 10**12).map(str), st.text("0123456789", max_size=4)),
    min_size=1,
    max_size=12,
).map(".".join)


@PROPERTIES
@given(
    st.one_of(
        uid_like,
        st.text(max_size=80),
        st.text("0123456789.", max_size=70),
        st.text("0123456789.", min_size=500, max_size=530),
    )
)
def test_a_uid_is_refused_exactly_when_healthimaging_refuses_it(value: str) -> None:
    problem = uid_field_problem(value)
    assert (problem is None) == service_uid_oracle(value)
    if problem is not None:
        code, message = problem
        assert code in {"uid_empty", "uid_too_long", "uid_invalid_character"}
        assert message


@PROPERTIES
@given(
    st.one_of(uid_like.filter(bool), st.text("0123456789.", min_size=1, max_size=120))
)
def test_a_uid_healthimaging_accepts_is_flagged_exactly_when_dicom_forbids_it(
    value: str,
) -> None:
    assert uid_field_problem(value) is None
    problem = uid_dicom_problem(value)
    assert (problem is None) == uid_oracle(value)
    if problem is not None:
        code, message = problem
        assert code.startswith("uid_")
        assert message


# --- S3 URIs ----------------------------------------------------------------------------------

BUCKET_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.-"


def s3_uri_oracle(value: str) -> bool:
    """S3's bucket naming rules in full, and HealthImaging's URI shape (no line break in the key)."""
    if len(value) > 1024 or not value.startswith("s3://"):
        return False
    bucket, slash, key = value[len("s3://") :].partition("/")
    if "\n" in key:
        return False
    if not 3 <= len(bucket) <= 63 or any(c not in BUCKET_CHARS for c in bucket):
        return False
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return False
    if ".." in bucket:
        return False
    parts = bucket.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return False
    if bucket.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return False
    return not bucket.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))


bucket_like = st.one_of(
    st.text(BUCKET_CHARS, min_size=1, max_size=70),
    st.lists(st.integers(0, 999).map(str), min_size=2, max_size=6).map(".".join),
    st.sampled_from(["xn--", "sthree-", "amzn-s3-demo-", ""]).flatmap(
        lambda prefix: st.text(BUCKET_CHARS, min_size=1, max_size=20).map(
            lambda middle: prefix + middle
        )
    ),
    st.text(BUCKET_CHARS, min_size=1, max_size=20).flatmap(
        lambda middle: st.sampled_from(
            ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3", "", "a"]
        ).map(lambda suffix: middle + suffix)
    ),
)
s3_uri_like = st.tuples(
    bucket_like, st.sampled_from(["", "/"]), st.text(max_size=40)
).map(lambda t: f"s3://{t[0]}{t[1]}{t[2] if t[1] else ''}")


@PROPERTIES
@given(st.one_of(s3_uri_like, st.text(max_size=60)))
def test_an_s3_uri_is_accepted_exactly_when_s3_would_name_such_a_bucket(
    value: str,
) -> None:
    assert _outcome(validate_s3_uri, value) == s3_uri_oracle(value)


# --- metadataFilePath -------------------------------------------------------------------------


def metadata_path_oracle(value: str) -> bool:
    if not 1 <= len(value) <= 1024:
        return False
    if any(not (c == " " or "!" <= c <= "~") for c in value):
        return False
    if "\\" in value or value[0] == " " or value[-1] == " " or value[0] == "/":
        return False
    spelling = value
    while True:
        if any(seg in (".", "..") for seg in re.split(r"[/\\]", spelling)):
            return False
        decoded = unquote(spelling)
        if decoded == spelling:
            return True
        spelling = decoded


path_like = st.lists(
    st.one_of(
        st.sampled_from(
            [".", "..", "%2e", "%2E%2e", "%252e%252e", "a b", " ", "x.json"]
        ),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    ),
    min_size=1,
    max_size=6,
).map("/".join)


@PROPERTIES
@given(st.one_of(path_like, st.text(max_size=40)))
def test_a_metadata_path_is_accepted_exactly_when_it_stays_inside_the_prefix(
    value: str,
) -> None:
    problem = metadata_path_problem(value)
    assert (problem is None) == metadata_path_oracle(value)
    if problem is not None:
        assert problem[0].startswith("path_")


# --- Job names --------------------------------------------------------------------------------

JOB_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/#-"


@PROPERTIES
@given(
    st.one_of(
        st.text(JOB_NAME_CHARS, max_size=70),
        st.text(max_size=70),
        st.text(JOB_NAME_CHARS + " \n\x00é", max_size=70),
    )
)
def test_a_job_name_is_accepted_exactly_when_healthimaging_would(value: str) -> None:
    expected = 1 <= len(value) <= 64 and all(c in JOB_NAME_CHARS for c in value)
    assert _outcome(validate_job_name, value) == expected


# --- DICOM JSON -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
TAGS = ["00100010", "00100020", "0020000D", "0020000E", "00081030", "00080020", "00280010", "7FE00010", "00020010", "0008103e", "00091001"]  # fmt: skip
attribute = st.fixed_dictionaries(
    {"vr": st.sampled_from(sorted(VRS) + ["XX", "pn", ""])},
    optional={
        "Value": st.lists(
            st.one_of(
                st.text(max_size=12),
                st.integers(-5, 70000),
                st.floats(allow_nan=False, allow_infinity=False),
                st.fixed_dictionaries(
                    {}, optional={"Alphabetic": st.text(max_size=12)}
                ),
            ),
            max_size=3,
        ),
        "InlineBinary": st.sampled_from(["AAAA", "not base64!", ""]),
    },
)
dicom_json_like = st.dictionaries(
    st.one_of(st.sampled_from(TAGS), st.text(max_size=9)), attribute, max_size=5
)


@PROPERTIES
@given(
    st.one_of(
        dicom_json_like.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=60),
        st.binary(max_size=60),
    )
)
def test_dicom_json_gets_a_verdict_never_an_exception(data: str | bytes) -> None:
    check = validate_dicom_json(data)
    assert check.is_valid == (not check.errors)
    for issue in check.errors:
        assert issue.message
    if check.is_valid:
        document = json.loads(data)
        assert isinstance(document, dict)
        for key, attr in document.items():
            assert re.fullmatch(r"[0-9A-F]{8}", key)
            assert attr["vr"] in VRS
            assert not key.startswith(("0002", "7FE0"))
        # An independent reader takes it too.
        Dataset.from_json(document)
    event("valid" if check.is_valid else "refused")


@pytest.mark.parametrize(
    "document",
    [
        {"00081030": {"vr": "LO", "Value": ["CT CHEST"]}},
        {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}},
    ],
)
def test_a_valid_dicom_json_object_is_accepted(document: dict[str, Any]) -> None:
    assert validate_dicom_json(json.dumps(document)).is_valid
