"""`manage.py import_job validate|submit|status|list`: the composer's verdicts and the job commands from a
shell, against localaws over HTTP."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from imports.jobs import limiter
from imports.jobs import request as jobrequest
from imports.jobs import results as jobresults
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.management.commands.import_job import Command
from imports.models import AuditEvent, Datastore, ImportJob, Scan
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import (
    INPUT,
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
    make_job,
    put_json,
    seed_prefix,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _run_as_alice(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS user running the commands is alice, who has an account."""
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


# --- validate ------------------------------------------------------------------------------


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
        1: f"{STUDY_A}.012,,{STUDY_FILE}",  # uid_leading_zero, and no file carries it
        2: f"1.2.abc,,{STUDY_FILE}",  # uid_invalid_character
        3: f"{'1' * 65},,{STUDY_FILE}",  # uid_longer_than_dicom, and no file carries it
        4: f"1.2.3.4,,{STUDY_FILE}",  # study_not_in_scan
        5: f"{STUDY_B},{SERIES_A1},{STUDY_FILE}",  # series_not_in_study
        6: f"{STUDY_B},{SERIES_B1},../x.json",  # path_traversal
        7: f"{STUDY_A},{SERIES_A1},metadata/nope.json",  # file_missing
        8: f"{STUDY_B},,{MALFORMED_FILE}",  # json_invalid
        9: f"{STUDY_A},,{WRONG_VR_FILE}",  # json_invalid (wrong VR) + names another study
        10: f"{STUDY_A},{SERIES_A2},{STUDY_FILE}",  # patient/study attribute in a series file
        11: f"{'1' * 513},,{STUDY_FILE}",  # uid_too_long: over HealthImaging's 512
    }
    code, problems = run_validate(tmp_path, list(rows.values()))
    assert code == 1
    found = {(p["row"], p["code"]) for p in problems}
    for expected in [
        (1, "uid_leading_zero"),
        (2, "uid_invalid_character"),
        (3, "uid_longer_than_dicom"),
        (4, "study_not_in_scan"),
        (5, "series_not_in_study"),
        (6, "path_traversal"),
        (7, "file_missing"),
        (8, "json_invalid"),
        (9, "json_invalid"),
        (10, "study_attribute_in_series_file"),
        (11, "uid_too_long"),
    ]:
        assert expected in found, (expected, sorted(found))


def test_a_uid_that_breaks_dicom_but_that_the_files_carry_is_a_warning_with_exit_0(
    tmp_path: Path, store: Datastore, localaws: LocalAWSHandle
) -> None:
    # Real archives hold such UIDs, and HealthImaging imports them: a leading zero, over 64 characters.
    study, series = "1.2.840.0123.9", "1.2.840.0123.9." + "1" * 60
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        body = dicom_bytes(study=study, series=series, sop=f"{series}.1")
    localaws.put(f"{INPUT}odd/1.dcm", body)
    code, problems = run_validate(tmp_path, [f"{study},{series},{SERIES_FILE}"])
    found = {(p["code"], p["field"]): p["severity"] for p in problems}
    assert code == 0, problems
    assert found[("uid_leading_zero", "studyInstanceUID")] == "warning"
    assert found[("uid_longer_than_dicom", "seriesInstanceUID")] == "warning"
    assert "error" not in found.values()


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
    from imports.drafts import services as drafts
    from imports.scanning.lookup import index_for_prefix
    from tests.builders import INPUT, OUTPUT, scan_prefix

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


# --- submit, status, list ----------------------------------------------------------------


STUDY = "1.2.826.0.1.3680043.8.498.41"


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_job", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def composer_world(localaws: LocalAWSHandle) -> Datastore:
    """The composer tests' prefix: two studies, three series, metadata files of every kind."""
    seed_prefix(localaws)
    return make_datastore()


def test_submit_prints_the_new_jobs_id_alone_on_the_last_line(
    composer_world: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        f"{STUDY_A},,{STUDY_FILE}\n"
        f"{STUDY_A},{SERIES_A2},{SERIES_FILE}\n"
    )
    output = _run(
        "submit", "--datastore", "Composer tests", "--name", "from-cli", "--mappings", str(mappings),
        "--accept-warnings",
    )  # fmt: skip
    job = ImportJob.objects.get()
    assert output.splitlines()[-1] == str(job.pk)
    # The warnings are printed; accepted, they do not stop the job.
    assert "warning: all rows: " in output
    assert job.status == ImportJob.Status.PENDING
    assert job.request["jobName"] == "from-cli"
    assert jobrequest.request_mappings(job.request) == [
        {"studyInstanceUID": STUDY_A, "metadataFilePath": STUDY_FILE},
        {"studyInstanceUID": STUDY_A, "seriesInstanceUID": SERIES_A2, "metadataFilePath": SERIES_FILE},
    ]  # fmt: skip


def test_submit_refuses_with_every_problem_and_exit_1(
    composer_world: Datastore, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        "1.2.03,,metadata/a.json\n"
        f"{STUDY_A},,\n"
        f"{STUDY_A},,{STUDY_FILE}\n"
    )
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_job", "submit", "--datastore", "Composer tests", "--name", "bad name",
            "--output", "s3://bucket-out/no-slash", "--mappings", str(mappings), stdout=out,
        )  # fmt: skip
    assert caught.value.returncode == 1
    assert "The job was not submitted" in str(caught.value)
    printed = out.getvalue()
    assert "error: all rows --output: The output S3 URI must end with “/”" in printed
    assert "error: all rows --name: A job name is 1-64 characters" in printed
    assert (
        "error: row 1 studyInstanceUID: StudyInstanceUID: UID component '03' has a leading zero"
        in printed
    )
    assert "error: row 2 metadataFilePath: " in printed
    assert "[duplicate_mapping]" in printed
    assert not ImportJob.objects.exists()
    with pytest.raises(CommandError, match="No enabled datastore is named “Nope”"):
        _run("submit", "--datastore", "Nope")


def test_submit_with_the_same_idempotency_key_twice_makes_one_job(
    composer_world: Datastore,
) -> None:
    first = _run(
        "submit", "--datastore", "Composer tests", "--idempotency-key", "nightly-42"
    )
    second = _run(
        "submit", "--datastore", "Composer tests", "--idempotency-key", "nightly-42"
    )
    assert first.splitlines()[-1] == second.splitlines()[-1]
    assert ImportJob.objects.count() == 1
    # A plain import (no mappings file) sends no importConfiguration at all.
    assert "importConfiguration" not in ImportJob.objects.get().request


def test_status_json_says_completed_with_errors_when_files_failed(
    localaws: LocalAWSHandle, datastore: Datastore, settings: Any
) -> None:
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    datastore.datastore_id = localaws.create_datastore()
    datastore.save()
    localaws.put(
        "s3://dicom-input/incoming/1.dcm", dicom_bytes(study=STUDY, series=STUDY + ".1")
    )
    localaws.put("s3://dicom-input/incoming/x.txt", b"not dicom")
    job_id = int(_run("submit", "--datastore", "Radiology").splitlines()[-1])
    jobs.job_submit(job_id=job_id)
    for _ in range(200):
        jobtracking.jobs_poll()
        if ImportJob.objects.get(pk=job_id).has_ended:
            break
    jobresults.job_ingest_results(job_id=job_id)

    status = json.loads(_run("status", str(job_id), "--json"))
    job = ImportJob.objects.get(pk=job_id)
    assert status["status"] == "completed_with_errors"
    assert status["aws_job_id"] == job.aws_job_id
    assert (status["imported"], status["failed"]) == (1, 1)
    text = _run("status", str(job_id))
    assert "Completed with errors" in text
    assert "1 imported, 1 failed" in text
    listed = [json.loads(line) for line in _run("list", "--json").splitlines()]
    assert [item["id"] for item in listed] == [job_id]
    assert str(job_id) in _run("list")


@pytest.mark.django_db(transaction=True)
def test_status_wait_blocks_until_the_job_has_ended(datastore: Datastore) -> None:
    job = make_job(datastore, key="k")
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.IN_PROGRESS)

    def end_it() -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            results=ImportJob.Results.DONE,
            message="broken",
        )

    timer = threading.Timer(0.5, end_it)
    timer.start()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "import_job", "status", str(job.pk), "--wait", "--json", "--interval", "0.05",
            stdout=out,
        )  # fmt: skip
    timer.join()
    status = json.loads(out.getvalue())
    assert status["status"] == "failed"
    assert status["message"] == "broken"
    assert exit_.value.code == 1


@pytest.mark.django_db(transaction=True)
def test_status_wait_returns_once_the_verification_is_no_longer_pending(
    datastore: Datastore,
) -> None:
    job = make_job(datastore, key="k")
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.COMPLETED,
        results=ImportJob.Results.DONE,
        verification=ImportJob.Verification.PENDING,
    )

    def verify_it() -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            verification=ImportJob.Verification.VERIFIED,
            verification_detail={
                "image_sets": 2,
                "attributes_checked": 5,
                "mismatches": [],
            },
        )

    timer = threading.Timer(0.5, verify_it)
    timer.start()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "import_job", "status", str(job.pk), "--wait", "--json", "--interval", "0.05",
            stdout=out,
        )  # fmt: skip
    timer.join()
    status = json.loads(out.getvalue())
    assert status["verification"] == {
        "state": "verified",
        "image_sets": 2,
        "attributes_checked": 5,
        "mismatches": 0,
    }
    assert status["prediction"] == {
        "new": 0,
        "adds_to": 0,
        "non_primary": 0,
        "confirmed": None,
    }
    assert exit_.value.code == 0
    assert "Overrides verified: 5 of 5 attributes in 2 image sets" in _run(
        "status", str(job.pk)
    )


def test_status_of_an_unknown_job_exits_1(db: None) -> None:
    with pytest.raises(CommandError) as caught:
        _run("status", "999999")
    assert caught.value.returncode == 1


# --- status --wait: the exit-code contract ------------------------------------------------


def _wait_exit_code(job: ImportJob) -> tuple[int, str]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("import_job", "status", str(job.pk), "--wait", stdout=out)
    return int(exit_.value.code or 0), out.getvalue()


def test_status_wait_exits_0_for_a_job_completed_with_no_failed_file(
    datastore: Datastore,
) -> None:
    job = make_job(
        datastore, key="clean", status=ImportJob.Status.COMPLETED,
        results=ImportJob.Results.DONE, success_count=3,
    )  # fmt: skip
    code, printed = _wait_exit_code(job)
    assert code == 0
    assert ": Completed" in printed


def test_status_wait_exits_1_for_a_job_completed_with_failed_files(
    datastore: Datastore,
) -> None:
    job = make_job(
        datastore, key="errors", status=ImportJob.Status.COMPLETED,
        results=ImportJob.Results.DONE, success_count=2, failure_count=1,
    )  # fmt: skip
    code, printed = _wait_exit_code(job)
    assert code == 1
    assert "Completed with errors" in printed


@pytest.mark.parametrize(
    ("status", "results"),
    [
        (ImportJob.Status.FAILED, ImportJob.Results.DONE),
        (ImportJob.Status.SUBMIT_FAILED, ImportJob.Results.NONE),
        # Completed, but no results were read: nothing says that no file failed.
        (ImportJob.Status.COMPLETED, ImportJob.Results.NONE),
    ],
)
def test_status_wait_exits_1_for_a_job_that_failed_or_whose_results_are_unknown(
    datastore: Datastore, status: str, results: str
) -> None:
    job = make_job(datastore, key=f"k-{status}", status=status, results=results)
    assert _wait_exit_code(job)[0] == 1


def test_status_without_wait_exits_0_for_a_failed_job(datastore: Datastore) -> None:
    job = make_job(datastore, key="f", status=ImportJob.Status.FAILED)
    assert "Failed" in _run("status", str(job.pk))


def test_status_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = Command().create_parser("manage.py", "import_job")
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "0 the job completed and no file failed" in help_text
    assert "1 the job completed with errors" in help_text


# --- submit refuses warnings unless accepted ----------------------------------------------


def _mappings_with_warnings(tmp_path: Path) -> Path:
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        f"{STUDY_A},,{STUDY_FILE}\n"
        f"{STUDY_A},{SERIES_A2},{SERIES_FILE}\n"
    )
    return mappings


def test_submit_refuses_mappings_with_warnings_naming_the_count_and_the_option(
    composer_world: Datastore, tmp_path: Path
) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_job", "submit", "--datastore", "Composer tests",
            "--mappings", str(_mappings_with_warnings(tmp_path)), stdout=out,
        )  # fmt: skip
    assert caught.value.returncode == 1
    warnings = out.getvalue().count("warning: ")
    assert warnings == 3
    assert f"the validation gave {warnings} warnings" in str(caught.value)
    assert "--accept-warnings" in str(caught.value)
    assert not ImportJob.objects.exists()


def test_submit_with_accept_warnings_submits_the_same_mappings(
    composer_world: Datastore, tmp_path: Path
) -> None:
    output = _run(
        "submit", "--datastore", "Composer tests",
        "--mappings", str(_mappings_with_warnings(tmp_path)), "--accept-warnings",
    )  # fmt: skip
    assert output.splitlines()[-1] == str(ImportJob.objects.get().pk)


# --- who ran it, in the audit trail -------------------------------------------------------


def test_submit_records_the_os_user_as_the_actor(
    composer_world: Datastore, alice: User
) -> None:
    job_id = int(_run("submit", "--datastore", "Composer tests").splitlines()[-1])
    events = AuditEvent.objects.filter(
        action__in=[AuditEvent.Action.JOB_CREATED, AuditEvent.Action.SCAN_STARTED]
    )
    assert {(e.action, e.actor_username, e.actor_id) for e in events} == {
        ("job.created", "alice", alice.pk),
        ("scan.started", "alice", alice.pk),
    }
    assert ImportJob.objects.get(pk=job_id).submitted_by == alice
    assert not AuditEvent.objects.filter(actor_username="system").exists()


def test_submit_records_the_account_given_with_user(
    composer_world: Datastore, carol: User
) -> None:
    _run("submit", "--datastore", "Composer tests", "--user", "carol")
    event = AuditEvent.objects.get(action=AuditEvent.Action.JOB_CREATED)
    assert (event.actor_username, event.actor_id) == ("carol", carol.pk)


def test_an_unknown_user_is_refused_before_anything_is_done(
    composer_world: Datastore, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="--user mallory: no account") as caught:
        _run("submit", "--datastore", "Composer tests", "--user", "mallory")
    assert caught.value.returncode == 1
    csv_file = _mappings_with_warnings(tmp_path)
    with pytest.raises(CommandError, match="--user mallory: no account"):
        _run("validate", "--datastore", "Composer tests", "--mappings", str(csv_file),
             "--user", "mallory")  # fmt: skip
    assert not ImportJob.objects.exists()
    assert not AuditEvent.objects.exists()


def test_an_os_user_without_an_account_is_told_to_give_user(
    composer_world: Datastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    with pytest.raises(CommandError, match="No account is named “deploy”, the OS user"):
        _run("submit", "--datastore", "Composer tests")
    assert not ImportJob.objects.exists()


def test_an_inactive_account_is_refused(composer_world: Datastore, carol: User) -> None:
    User.objects.filter(pk=carol.pk).update(is_active=False)
    with pytest.raises(CommandError, match="“carol” is not active"):
        _run("submit", "--datastore", "Composer tests", "--user", "carol")


def test_submit_refuses_the_same_request_again_without_allow_duplicate(
    composer_world: Datastore, capsys: pytest.CaptureFixture[str]
) -> None:
    first = int(_run("submit", "--datastore", "Composer tests").splitlines()[-1])
    err = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_job", "submit", "--datastore", "Composer tests", stdout=io.StringIO(),
            stderr=err,
        )  # fmt: skip
    assert caught.value.returncode == 1
    assert "run again with --allow-duplicate to import it again" in str(caught.value)
    assert f"Warning: Import job {first} (queued, confirmed " in err.getvalue()
    assert ImportJob.objects.count() == 1


def test_submit_with_allow_duplicate_warns_and_records_the_earlier_job(
    composer_world: Datastore,
) -> None:
    first = int(_run("submit", "--datastore", "Composer tests").splitlines()[-1])
    err = io.StringIO()
    out = io.StringIO()
    call_command(
        "import_job", "submit", "--datastore", "Composer tests", "--allow-duplicate",
        stdout=out, stderr=err,
    )  # fmt: skip
    again = ImportJob.objects.exclude(pk=first).get()
    assert out.getvalue().splitlines()[-1] == str(again.pk)
    assert f"Warning: Import job {first} " in err.getvalue()
    created = AuditEvent.objects.get(action="job.created", target_id=str(again.pk))
    assert created.details["import_again_of"] == first


def test_submit_with_other_mappings_is_no_duplicate(
    composer_world: Datastore, tmp_path: Path
) -> None:
    _run("submit", "--datastore", "Composer tests")
    mappings = tmp_path / "mappings.csv"
    mappings.write_text(
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{STUDY_A},,{STUDY_FILE}\n"
    )
    _run(
        "submit", "--datastore", "Composer tests", "--mappings", str(mappings),
        "--accept-warnings",
    )  # fmt: skip
    assert ImportJob.objects.count() == 2
