"""`manage.py import_job corrections`: a dry run of a sheet against a scanned localaws prefix, over HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from openpyxl import Workbook

from imports.corrections import report
from imports.models import Datastore, ObjectHeader, Scan
from localaws.testing import LocalAWSHandle
from tests.builders import BUCKET, scan_prefix
from tests.corrections.conftest import MERGE_1, MERGE_2, MERGE_3, TWIN_B, ZEROS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _run_as_alice(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS user running the command is alice, who has an account (a scan it starts is hers)."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


def run(sheet: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    code = 0
    try:
        call_command(
            "import_job", "corrections", "--datastore", "Composer tests", "--sheet", str(sheet),
            *extra, stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue()


def run_json(sheet: Path) -> tuple[int, list[dict[str, Any]]]:
    code, out = run(sheet, "--json")
    return code, [json.loads(line) for line in out.splitlines() if line]


def test_a_clean_sheet_exits_0_and_prints_each_row_masked(
    store: Datastore, write_sheet: Callable[[str], Path]
) -> None:
    sheet = write_sheet(
        'AccessionNumber,StudyDescription,"(0010,0020)"\n'
        "0012345,CT BRAIN,000988\n"
        "M2,CT CHEST,PAT-M\n"
    )
    code, out = run(sheet)
    assert code == 0
    assert f"row 2: ok: study {ZEROS}" in out
    assert (
        "  StudyDescription (0008,1030): “CT HEAD” ×1, “CT Head” ×1 → “CT BRAIN”" in out
    )
    assert "  PatientID (0010,0020): “0***” ×2 → “0***”" in out
    assert f"row 3: unchanged: study {MERGE_2} (warning: Row 3 changes nothing" in out
    assert (
        "2 rows: 1 to change, 1 unchanged, 0 with errors; nothing was written (a dry run)."
        in out
    )
    assert "000988" not in out
    assert "PAT-M" not in out


def test_json_lines_carry_row_status_uid_and_changes(
    store: Datastore, write_sheet: Callable[[str], Path]
) -> None:
    sheet = write_sheet(
        'PatientID,Scope,StudyInstanceUID,"(0010,0020)",PatientName\n'
        "PAT-M,patient,,PAT-N,New^Name\n"
        f",,{TWIN_B},,Other^Name\n"
    )
    code, lines = run_json(sheet)
    assert code == 0
    merge, study = lines
    assert merge["row"] == 2
    assert merge["status"] == "ok"
    assert merge["study_instance_uid"] is None  # a patient's three studies
    assert merge["study_instance_uids"] == sorted([MERGE_1, MERGE_2, MERGE_3])
    assert merge["changes"] == [
        {"keyword": "PatientID", "tag": "00100020", "vr": "LO",
         "before": [{"value": "P***", "count": 5}], "after": "P***"},
        {"keyword": "PatientName", "tag": "00100010", "vr": "PN",
         "before": [{"value": "P*** P***", "count": 5}], "after": "N*** N***"},
    ]  # fmt: skip
    assert (study["study_instance_uid"], study["status"]) == (TWIN_B, "ok")
    assert "code" not in study


def test_a_sheet_with_an_error_exits_1_and_names_the_row(
    store: Datastore, write_sheet: Callable[[str], Path]
) -> None:
    sheet = write_sheet("AccessionNumber,StudyDescription\n12345,CT\nDUP,MR\nM1,CT\n")
    code, lines = run_json(sheet)
    assert code == 1
    assert [(line["row"], line["status"], line.get("code")) for line in lines] == [
        (2, "error", "no_match"),
        (3, "error", "several_matches"),
        (4, "ok", None),
    ]
    assert lines[0]["message"].endswith("0012345 does — were leading zeros lost?")
    code, out = run(sheet)
    assert code == 1
    assert (
        "row 2: error: Row 2, column A (AccessionNumber): no study has AccessionNumber 12345"
        in out
    )
    assert (
        "3 rows: 1 to change, 0 unchanged, 2 with errors; fix the errors; nothing was written."
        in out
    )


def test_a_sheet_that_cannot_be_read_exits_1_with_its_reasons(
    store: Datastore, write_sheet: Callable[[str], Path]
) -> None:
    code, lines = run_json(write_sheet("PatientNmae,AccessionNumber\nx,A1\n"))
    assert code == 1
    (line,) = lines
    assert (line["row"], line["status"], line["code"]) == (None, "error", "bad_header")
    assert line["message"].startswith(
        "Column A (PatientNmae): 'PatientNmae' is not a keyword"
    )
    assert not Scan.objects.exists()  # refused before anything was scanned


def test_it_reads_an_xlsx_sheet(store: Datastore, tmp_path: Path) -> None:
    book = Workbook()
    rows = book.active
    assert rows is not None
    rows.append(["StudyInstanceUID", "StudyDescription"])
    rows.append([TWIN_B, "MR KNEE LEFT"])
    path = tmp_path / "sheet.xlsx"
    book.save(path)
    code, lines = run_json(path)
    assert code == 0
    assert lines[0]["study_instance_uid"] == TWIN_B


def test_it_scans_first_then_reuses_the_scan_and_writes_nothing(
    store: Datastore, write_sheet: Callable[[str], Path], localaws: LocalAWSHandle
) -> None:
    sheet = write_sheet(f"StudyInstanceUID,StudyDescription\n{TWIN_B},MR\n")
    assert run(sheet)[0] == 0
    assert Scan.objects.get().status == Scan.Status.COMPLETED
    objects = ObjectHeader.objects.count()
    localaws.clear_calls()
    assert run(sheet)[0] == 0
    assert Scan.objects.count() == 1  # an unchanged prefix: the same scan serves again
    assert ObjectHeader.objects.count() == objects
    writes = [
        c
        for c in localaws.calls("s3")
        if c["operation"] not in ("ListObjectsV2", "ListObjects")
    ]
    assert writes == []
    keys = [
        o["Key"]
        for o in localaws.s3_client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
    ]
    assert not [k for k in keys if "corrections" in k]


def test_an_unreadable_sheet_file_is_refused(store: Datastore, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot be read"):
        call_command(
            "import_job", "corrections", "--datastore", "Composer tests",
            "--sheet", str(tmp_path / "missing.csv"), stdout=io.StringIO(),
        )  # fmt: skip


def test_the_help_says_patient_values_are_always_masked_and_what_write_writes() -> None:
    assert "always masked" in report.HELP
    assert "metadata/corrections/<sheet id>/<UID>.json" in report.HELP


def test_without_an_account_for_the_os_user_it_uses_an_existing_scan_and_asks_for_one_to_start_one(
    store: Datastore,
    write_sheet: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    localaws: LocalAWSHandle,
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "nobody")
    sheet = write_sheet(f"StudyInstanceUID,StudyDescription\n{TWIN_B},MR\n")
    with pytest.raises(
        CommandError,
        match="must be scanned first, and no account is named after the OS user",
    ):
        run(sheet)
    scan_prefix()  # as `manage.py scan` does, with no account
    assert run(sheet)[0] == 0
