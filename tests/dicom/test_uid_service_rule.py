"""The mapping-UID rule agrees with the installed botocore model of HealthImaging, on samples it accepts and
refuses: when botocore ships a looser or stricter pattern, this fails and says which sample moved."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest

from imports.dicom.uids import (
    SERVICE_UID_MAX_LENGTH,
    SERVICE_UID_PATTERN,
    uid_service_problem,
)

ACCEPTED = [
    "1.2.840.10008.1.2.1",
    "0",
    "01.02.003",  # leading zeros: DICOM forbids them, the service takes them
    "1..2",
    ".1.2",
    "1.2.",
    ".",
    "1" * 65,
    "1" * 512,
    "2.25." + "9" * 507,  # 512 characters
]
REFUSED = [
    "",
    "1" * 513,
    "1.2.abc",
    "1.2.3 ",
    " 1.2.3",
    "1,2,3",
    "1.2.3\n",
    "1-2-3",
    "１.２",  # fullwidth digits
    "١.٢",  # Arabic-Indic digits: \d would take them, the model's [0-9] does not
]


def _mapping_uid_shapes() -> dict[str, dict[str, object]]:
    model = botocore.session.get_session().get_service_model("medical-imaging")
    start: Any = model.operation_model("StartDICOMImportJob").input_shape
    mapping = (
        start.members["importConfiguration"]
        .members["dicomJsonMetadataImportConfiguration"]
        .members["dicomMetadataMappings"]
        .member
    )
    return {
        name: mapping.members[name].metadata
        for name in ("studyInstanceUID", "seriesInstanceUID")
    }


def model_accepts(metadata: dict[str, object], value: str) -> bool:
    low = int(str(metadata.get("min", 0)))
    high = int(str(metadata["max"]))
    # AWS matches the whole value against the pattern (Java's Pattern.matches).
    return low <= len(value) <= high and bool(
        re.fullmatch(str(metadata["pattern"]), value)
    )


@pytest.mark.parametrize("field", ["studyInstanceUID", "seriesInstanceUID"])
def test_the_written_rule_is_the_installed_models(field: str) -> None:
    metadata = _mapping_uid_shapes()[field]
    assert metadata["pattern"] == SERVICE_UID_PATTERN
    assert metadata["max"] == SERVICE_UID_MAX_LENGTH


@pytest.mark.parametrize("field", ["studyInstanceUID", "seriesInstanceUID"])
@pytest.mark.parametrize("value", ACCEPTED + REFUSED)
def test_the_validator_accepts_exactly_what_the_model_accepts(
    field: str, value: str
) -> None:
    expected = value in ACCEPTED
    assert model_accepts(_mapping_uid_shapes()[field], value) is expected
    assert (uid_service_problem(value) is None) is expected
