"""`manage.py import_job validate`: the composer's verdicts from a shell, against localaws over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imports.models import Datastore, Scan
from localaws.testing import LocalAWSHandle
from tests.drafts_world import (
    MALFORMED_FILE,
    SERIES_A1,
    SERIES_A2,
    SERIES_B1,
    SERIES_FILE,
    STUDY_A,
    STUDY_B,
    STUDY_FILE,
    WRONG_VR_FILE,
    make_datastore,
    put_json,
    seed_prefix,
)


@pytest.fixture
def store(db: None, localaws: LocalAWSHandle) -> Datastore:
    seed_prefix(localaws)
    return make_datastore()


def run_validate(
    tmp_path: Path, rows: list[str], *extra: str
) -> tuple[int, list[dict[str, Any]]]:
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n" + "\n".join(rows) + "\n"
    )
    out_lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            out_lines.extend(line for line in text.splitlines() if line)

        def flush(self) -> None:
            pass

    code = 0
    try:
        call_command(
            "import_job", "validate", "--datastore", "Composer tests",
            "--mappings", str(csv_file), "--json", *extra, stdout=Out(), stderr=Out(),
        )  # fmt: skip
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    problems = [json.loads(line) for line in out_lines if line.startswith("{")]
    return code, problems


def test_a_correct_set_exits_0_with_only_warnings(
    tmp_path: Path, store: Datastore
) -> None:
    code, problems = run_validate(
        tmp_path, [f"{STUDY_A},,{STUDY_FILE}", f"{STUDY_A},{SERIES_A2},{SERIES_FILE}"]
    )
    assert code == 0
    assert {p["severity"] for p in problems} == {"warning"}
    # Study B is imported unchanged, two JSON files are named by no mapping, and the series file sets a
    # study attribute (StudyDescription), which then differs between the series of the study.
    assert {p["code"] for p in problems} == {
        "unmapped_study",
        "unmapped_json_file",
        "study_attribute_in_series_file",
    }
    for problem in problems:
        assert set(problem) == {"severity", "row", "field", "code", "message"}


def test_it_scans_the_prefix_first_when_it_has_no_scan(
    tmp_path: Path, store: Datastore
) -> None:
    assert not Scan.objects.exists()
    run_validate(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert Scan.objects.get().status == Scan.Status.COMPLETED
    run_validate(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert Scan.objects.count() == 1  # unchanged prefix: the same scan serves again


def test_every_row_rule_gives_its_code_and_exit_1(
    tmp_path: Path, store: Datastore
) -> None:
    rows = {
        1: f"{STUDY_A}.012,,{STUDY_FILE}",  # uid_leading_zero
        2: f"1.2.abc,,{STUDY_FILE}",  # uid_invalid_character
        3: f"{'1' * 65},,{STUDY_FILE}",  # uid_too_long
        4: f"1.2.3.4,,{STUDY_FILE}",  # study_not_in_scan
        5: f"{STUDY_B},{SERIES_A1},{STUDY_FILE}",  # series_not_in_study
        6: f"{STUDY_B},{SERIES_B1},../x.json",  # path_traversal
        7: f"{STUDY_A},{SERIES_A1},metadata/nope.json",  # file_missing
        8: f"{STUDY_B},,{MALFORMED_FILE}",  # json_invalid
        9: f"{STUDY_A},,{WRONG_VR_FILE}",  # json_invalid (wrong VR) + names another study
        10: f"{STUDY_A},{SERIES_A2},{STUDY_FILE}",  # patient/study attribute in a series file
    }
    code, problems = run_validate(tmp_path, list(rows.values()))
    assert code == 1
    found = {(p["row"], p["code"]) for p in problems}
    for expected in [
        (1, "uid_leading_zero"),
        (2, "uid_invalid_character"),
        (3, "uid_too_long"),
        (4, "study_not_in_scan"),
        (5, "series_not_in_study"),
        (6, "path_traversal"),
        (7, "file_missing"),
        (8, "json_invalid"),
        (9, "json_invalid"),
        (10, "study_attribute_in_series_file"),
    ]:
        assert expected in found, (expected, sorted(found))


def test_a_csv_without_its_header_is_refused_with_exit_1(
    tmp_path: Path, store: Datastore
) -> None:
    csv_file = tmp_path / "m.csv"
    csv_file.write_text(f"{STUDY_A},,{STUDY_FILE}\n")
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "import_job", "validate", "--datastore", "Composer tests", "--mappings", str(csv_file),
        )  # fmt: skip
    assert exit_.value.code == 1


def test_an_unknown_datastore_is_named(tmp_path: Path, store: Datastore) -> None:
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("studyInstanceUID,seriesInstanceUID,metadataFilePath\n")
    with pytest.raises(CommandError, match="No enabled datastore is named “Nope”"):
        call_command(
            "import_job", "validate", "--datastore", "Nope", "--mappings", str(csv_file)
        )


def test_a_file_rewritten_since_the_scan_is_read_again(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    code, _ = run_validate(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert code == 0
    put_json(localaws, STUDY_FILE, "[]")
    code, problems = run_validate(tmp_path, [f"{STUDY_A},,{STUDY_FILE}"])
    assert code == 1
    assert (1, "json_invalid") in {(p["row"], p["code"]) for p in problems}


def test_the_cli_gives_the_composers_verdicts_on_the_same_mappings(
    tmp_path: Path, store: Datastore
) -> None:
    from imports import drafts
    from imports.scanning.lookup import index_for_prefix
    from tests.drafts_world import INPUT, OUTPUT, scan_prefix

    scan_prefix()
    draft = drafts.draft_start(
        actor=None, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    assert draft.scan == index_for_prefix(
        actor=None, datastore=store, bucket="draft-in", prefix="incoming/"
    )
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    drafts.draft_assign(
        draft=draft, actor=None, version=2, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    composer = {
        (p.severity, p.row, p.field, p.code) for p in drafts.draft_validate(draft=draft)
    }
    rows = [",".join(row) for row in drafts.draft_csv_rows(draft=draft)]
    code, problems = run_validate(tmp_path, rows)
    cli = {(p["severity"], p["row"], p["field"], p["code"]) for p in problems}
    assert cli == composer
    assert code == 1  # the wrong-VR file is an error in both
