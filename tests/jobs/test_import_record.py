"""The signed import record of a verified job (a real job through localaws): `import_record export` writes it,
`import_record verify` accepts it as written and names the first field an edit changed; the job page shows the
verification (values hidden from viewers), asks for it again, and offers the record to those who may see it."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from imports.jobs import limiter, record, verification
from imports.models import AuditEvent, Datastore, ImportJob
from localaws.testing import LocalAWSHandle
from tests.builders import (
    SERIES_A2,
    SERIES_FILE,
    STUDY_A,
    STUDY_FILE,
    make_localaws_datastore,
    seed_prefix,
)
from tests.jobs.test_verification import run_to_results, submit, verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings: Any, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.JOBS_POLL_FIRST_S = 0
    limiter.START_IMPORT_JOB = f"tests.start.{uuid.uuid4().hex}"
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


@pytest.fixture
def verified(tmp_path: Path, db: None, localaws: LocalAWSHandle) -> ImportJob:
    cache.clear()
    seed_prefix(localaws)
    make_localaws_datastore(localaws)
    job = submit(
        tmp_path, [f"{STUDY_A},,{STUDY_FILE}", f"{STUDY_A},{SERIES_A2},{SERIES_FILE}"]
    )
    return verify(run_to_results(job))


def export(job: ImportJob, path: Path) -> None:
    call_command(
        "import_record", "export", str(job.pk), "--output", str(path),
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("import_record", "verify", str(path), stdout=out, stderr=err)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_the_record_round_trips_and_holds_what_an_auditor_needs(
    verified: ImportJob, tmp_path: Path
) -> None:
    path = tmp_path / "record.json"
    export(verified, path)
    code, out, _ = check(path)
    assert code == 0
    assert "intact" in out
    document = json.loads(path.read_text())
    assert list(document) == [*record.FIELDS, "signature"]
    assert document["request"] == verified.request
    assert document["submitter"] == "alice"
    # Its files set no patient attribute: nothing to approve (the walkthrough names an approver).
    assert document["approval"] is None
    assert [f["path"] for f in document["mapping_files"]["files"]] == sorted(
        [STUDY_FILE, SERIES_FILE]
    )
    assert all(f["etag"] for f in document["mapping_files"]["files"])
    assert len(document["files"]["outcomes"]) == verified.files.count()
    assert document["files"]["imported"] == 6
    assert document["verification"]["state"] == "verified"
    assert document["verification"]["attributes_checked"] == 3
    assert document["prediction"]["confirmed"] is True
    assert document["times"]["verified_at"]
    # The audit trail says it was written, with its MAC.
    written = AuditEvent.objects.get(
        action=AuditEvent.Action.RECORD_WRITTEN, target_id=str(verified.pk)
    )
    assert written.details["mac"] == document["signature"]["mac"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["verification"].update(mismatches=[]) or d["verification"].update(state="x"), "verification"),
        (lambda d: d["files"]["outcomes"][0].update(outcome="failure"), "files"),
        (lambda d: d.update(submitter="mallory"), "submitter"),
        (lambda d: d.update(approval={"approver": "mallory"}), "approval"),
        (lambda d: d["request"].update(jobName="other"), "request"),
        (lambda d: d["signature"].update(mac="0" * 64), "signature"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)  # fmt: skip
def test_an_edited_record_exits_1_naming_the_field(
    verified: ImportJob, tmp_path: Path, edit: Any, field: str
) -> None:
    path = tmp_path / "record.json"
    export(verified, path)
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document, indent=2))
    code, _, err = check(path)
    assert code == 1
    assert f"the field “{field}” changed" in err


def test_digests_recomputed_after_an_edit_still_fail_on_the_signature(
    verified: ImportJob, tmp_path: Path
) -> None:
    path = tmp_path / "record.json"
    export(verified, path)
    document = json.loads(path.read_text())
    document["submitter"] = "mallory"
    document["signature"]["digests"]["submitter"] = record._digest("mallory")
    path.write_text(json.dumps(document))
    code, _, err = check(path)
    assert code == 1
    assert "“signature”" in err


def test_a_record_checked_with_another_key_fails(
    verified: ImportJob, tmp_path: Path, settings: Any
) -> None:
    path = tmp_path / "record.json"
    export(verified, path)
    settings.IMPORT_RECORD_KEY = "another-installation's-key"
    assert check(path)[0] == 1


def test_a_file_that_is_not_a_record_exits_1_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("{not json")
    code, _, err = check(path)
    assert code == 1
    assert "is not JSON" in err
    code, _, err = check(tmp_path / "missing.json")
    assert code == 1
    assert "cannot be read" in err


def test_export_of_a_job_without_a_record_exits_1(
    tmp_path: Path, datastore: Datastore
) -> None:
    from tests.builders import make_job

    job = make_job(datastore)
    with pytest.raises(CommandError) as refused:
        export(job, tmp_path / "r.json")
    assert refused.value.returncode == 1
    assert "no signed record yet" in str(refused.value)


def test_export_without_output_prints_the_record(verified: ImportJob) -> None:
    out = io.StringIO()
    call_command("import_record", "export", str(verified.pk), stdout=out)
    assert json.loads(out.getvalue()) == verified.record


def test_the_job_page_shows_the_verification_and_the_record_to_an_operator(
    verified: ImportJob, client_alice: Client
) -> None:
    page = client_alice.get(f"/jobs/{verified.pk}/").content.decode()
    assert "Overrides verified: 3 of 3 attributes in 3 image sets" in page
    assert "prediction confirmed" in page
    assert f"/jobs/{verified.pk}/record.json" in page
    response = client_alice.get(f"/jobs/{verified.pk}/record.json")
    assert response.status_code == 200
    assert json.loads(response.content) == verified.record
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.EXPORTED, target_id=str(verified.pk)
    ).exists()


def test_a_viewer_sees_the_mismatches_file_by_file_without_their_values(
    verified: ImportJob, client_bob: Client, localaws: LocalAWSHandle
) -> None:
    a2 = next(s for s in localaws.image_sets() if s["seriesInstanceUID"] == SERIES_A2)
    localaws.change_metadata(a2["imageSetId"], "0008103E", "LO", "CHANGED LATER")
    assert verification.job_verify_again(job=verified, actor=None)
    job = verify(verified)
    assert job.verification == ImportJob.Verification.MISMATCHES
    page = client_bob.get(f"/jobs/{job.pk}/").content.decode()
    assert "1 of 3 attributes in 3 image sets differ" in page
    assert SERIES_FILE in page
    assert "SeriesDescription" in page
    assert "CHANGED LATER" not in page
    assert "T2 TSE AXIAL" not in page
    assert "record.json" not in page
    assert client_bob.get(f"/jobs/{job.pk}/record.json").status_code == 403
    # A viewer may not ask for it again either.
    assert client_bob.post(f"/jobs/{job.pk}/verify/").status_code == 403


def test_an_operator_asks_for_the_verification_again_and_the_card_polls_until_done(
    verified: ImportJob, client_alice: Client
) -> None:
    response = client_alice.post(f"/jobs/{verified.pk}/verify/")
    assert response.status_code == 302
    verified.refresh_from_db()
    assert verified.verification == ImportJob.Verification.PENDING
    card = client_alice.get(f"/jobs/{verified.pk}/verification/")
    assert card.status_code == 200
    assert 'hx-trigger="every 5s"' in card.content.decode()
    verify(verified)
    assert client_alice.get(f"/jobs/{verified.pk}/verification/").status_code == 286
