"""`manage.py import_job validate --predict [--json]`: one prediction line a series, against image sets a real
localaws import job made (over HTTP); the exit code stays what the validation says."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command

from imports.models import Datastore
from localaws.testing import LocalAWSHandle
from tests.builders import (
    SERIES_A1,
    SERIES_A2,
    SERIES_B1,
    SERIES_FILE,
    STUDY_A,
    STUDY_B,
    STUDY_FILE,
    WRONG_VR_FILE,
    make_localaws_datastore,
    seed_prefix,
    stored_before,
)

pytestmark = pytest.mark.django_db

PREDICTION_KEYS = [
    "kind",
    "study_instance_uid",
    "series_instance_uid",
    "outcome",
    "image_set_id",
    "image_set_version",
    "differs",
]


@pytest.fixture(autouse=True)
def _run_as_alice(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


@pytest.fixture
def store(db: None, localaws: LocalAWSHandle) -> Datastore:
    cache.clear()
    seed_prefix(localaws)
    return make_localaws_datastore(localaws)


def validate(tmp_path: Path, rows: list[str], *extra: str) -> tuple[int, list[str]]:
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n" + "\n".join(rows) + "\n"
    )
    out = io.StringIO()
    code = 0
    try:
        call_command(
            "import_job", "validate", "--datastore", "Composer tests",
            "--mappings", str(csv_file), *extra, stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue().splitlines()


def predictions(lines: list[str]) -> dict[str, dict[str, Any]]:
    found = [json.loads(line) for line in lines if line.startswith("{")]
    return {p["series_instance_uid"]: p for p in found if p.get("kind") == "prediction"}


def test_it_prints_one_prediction_line_a_series_with_each_outcome(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    stored_before(localaws, store, A1={}, A2={"PatientID": "PAT-OTHER"})
    code, lines = validate(
        tmp_path, [f"{STUDY_A},,{STUDY_FILE}"], "--predict", "--json"
    )
    assert code == 0
    found = predictions(lines)
    image_sets = {
        s["seriesInstanceUID"]: s["imageSetId"] for s in localaws.image_sets()
    }
    assert found[SERIES_B1] == {
        "kind": "prediction",
        "study_instance_uid": STUDY_B,
        "series_instance_uid": SERIES_B1,
        "outcome": "new",
        "image_set_id": None,
        "image_set_version": None,
        "differs": [],
    }
    # The study file sets A1's description to "CT CHEST W CONTRAST", not what A1 was stored with.
    assert found[SERIES_A1]["outcome"] == "non_primary"
    assert found[SERIES_A1]["differs"] == ["StudyDescription"]
    assert found[SERIES_A2] == {
        "kind": "prediction",
        "study_instance_uid": STUDY_A,
        "series_instance_uid": SERIES_A2,
        "outcome": "non_primary",
        "image_set_id": image_sets[SERIES_A2],
        "image_set_version": 1,
        "differs": ["PatientID"],
    }
    assert all(list(p) == PREDICTION_KEYS for p in found.values())
    # The problem lines are still there, before the predictions.
    kinds = [("prediction" if '"kind"' in line else "problem") for line in lines]
    assert kinds == sorted(kinds, key=lambda k: k == "prediction")
    assert "problem" in kinds


def test_a_series_stored_alike_adds_to_its_image_set_with_its_version(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    stored_before(localaws, store, A1={})
    stored_before(localaws, store, A1={})
    _, lines = validate(tmp_path, [f"{STUDY_B},,{STUDY_FILE}"], "--predict", "--json")
    a1 = predictions(lines)[SERIES_A1]
    assert (a1["outcome"], a1["image_set_version"], a1["differs"]) == ("adds_to", 2, [])


def test_without_predict_there_is_no_prediction_line(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    localaws.clear_calls()
    _, lines = validate(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"], "--json")
    assert predictions(lines) == {}
    assert localaws.calls("medical-imaging", "SearchImageSets") == []


def test_the_exit_code_stays_what_the_validation_says(
    tmp_path: Path, store: Datastore
) -> None:
    code, lines = validate(
        tmp_path, [f"{STUDY_B},,{WRONG_VR_FILE}"], "--predict", "--json"
    )
    assert code == 1
    assert len(predictions(lines)) == 3


def test_when_aws_cannot_answer_the_outcome_is_null_with_a_reason_and_the_exit_code_is_unchanged(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    localaws.add_fault(
        service="medical-imaging", operation="SearchImageSets",
        error="AccessDeniedException", count=10,
    )  # fmt: skip
    code, lines = validate(
        tmp_path, [f"{STUDY_A},,{STUDY_FILE}"], "--predict", "--json"
    )
    assert code == 0
    found = predictions(lines)
    assert {p["outcome"] for p in found.values()} == {None}
    assert all(list(p) == [*PREDICTION_KEYS, "reason"] for p in found.values())
    assert "medical-imaging:SearchImageSets" in found[SERIES_A1]["reason"]


def test_without_json_it_prints_a_table_with_the_summary_and_the_cost(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    stored_before(localaws, store, A2={"PatientID": "PAT-OTHER"})
    code, lines = validate(
        tmp_path,
        [f"{STUDY_A},,{STUDY_FILE}", f"{STUDY_A},{SERIES_A2},{SERIES_FILE}"],
        "--predict",
    )
    assert code == 0
    text = "\n".join(lines)
    assert (
        "Prediction in “Composer tests”: 2 new, 0 added to an image set, 1 non-primary"
        in text
    )
    row = next(line for line in lines if SERIES_A2 in line)
    assert "NON-PRIMARY" in row
    assert "PatientID" in row
    assert "at least 5 MB" in text
    assert "30 days" in text
    # Patient values never reach the table: only the keywords that differ.
    assert "PAT-OTHER" not in text
