"""Patient names, IDs, UIDs and S3 keys stay out of every log line, the Celery worker's included."""

from __future__ import annotations

import io
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from imports.drafts import services as drafts
from imports.drafts.preview import series_preview
from imports.models import Datastore, ImportDraft, ScanSeries
from imports.phi_logging import (
    NAME_MARK,
    REDACTED,
    UID_MARK,
    PhiRedactingFilter,
    phi_forget_all,
    phi_remember,
    redact,
)
from imports.scanning import control, run
from localaws import democorpus
from tests.conftest import WorkerProcess, wait_for
from tests.worker_tasks import log_patient_data

PATIENT_NAMES = [p.name for p in (democorpus.JANE, democorpus.JOHN, democorpus.MARIA)]
PATIENT_IDS = [p.id for p in (democorpus.JANE, democorpus.JOHN, democorpus.MARIA)]
STUDY_UID = democorpus.study_uid(democorpus.STUDIES[0])


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    phi_forget_all()
    yield
    phi_forget_all()


# --- Each rule, with what it must leave alone ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ("study 1.2.826.0.1.3680043.8.498.10 done", f"study {UID_MARK} done"),
        ("series 2.25.230351452701147915911300645161437194537", f"series {UID_MARK}"),
        ("key incoming/1.2.840.113619.2.55/1.dcm", f"key incoming/{UID_MARK}/1.dcm"),
        ("Doe^Jane was read", f"{NAME_MARK} was read"),
        ("name Smith^John^A here", f"name {NAME_MARK} here"),
        ("PatientName=Garcia", f"PatientName={REDACTED}"),
        ("patient_id: 'DEMO0001' missing", f"patient_id: {REDACTED} missing"),
        ("(0010,0020)=X99 read", f"(0010,0020)={REDACTED} read"),
        ("read s3://in/incoming/DEMO0001/1.dcm", f"read s3://in/{REDACTED}"),
    ],
)
def test_it_redacts_by_shape(line: str, redacted: str) -> None:
    assert redact(line) == redacted


@pytest.mark.parametrize(
    "line",
    [
        "Scan 42 ended incomplete: 3 objects unread",
        "Locked out the sign-in from 10.0.0.1",
        "celery 5.7.0 (opalescent) ready",
        "(0008,0020)=20240101 is a study date",
        "s3://in/ listed",
        "pattern ^$ matched",
    ],
)
def test_it_leaves_lines_without_patient_data_alone(line: str) -> None:
    assert redact(line) == line


def test_it_redacts_values_read_from_headers_wherever_they_appear_later() -> None:
    assert redact("incoming/DEMO0003/x.dcm") == "incoming/DEMO0003/x.dcm"
    phi_remember(["DEMO0003", "Garcia^Maria", "F", None])
    assert redact("incoming/DEMO0003/x.dcm by Garcia^Maria, sex F") == (
        f"incoming/{REDACTED}/x.dcm by {REDACTED}, sex F"
    )


def _record(
    name: str, level: int, msg: str, args: object, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value Doe^Jane in 1.2.826.0.1.3680043.8.498.10")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def test_a_dictionary_argument_named_as_patient_data_is_redacted() -> None:
    record = _record(
        "imports.x",
        logging.INFO,
        "read %(key)s of %(patient_id)s in %(count)d s",
        {"key": "incoming/P7/1.dcm", "patient_id": "P7", "count": 3},
    )
    assert PhiRedactingFilter().filter(record)
    assert record.getMessage() == f"read {REDACTED} of {REDACTED} in 3 s"


@pytest.mark.parametrize(
    ("logger", "msg"),
    [
        ("celery.worker.strategy", "Task %(name)s[%(id)s] received"),
        ("celery.app.trace", "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"),
    ],
)  # fmt: skip
def test_celery_task_names_are_kept_while_patient_data_beside_them_is_redacted(
    logger: str, msg: str
) -> None:
    task_id = str(uuid.uuid4())
    args = {"name": "imports.tasks.scan_prefix", "id": task_id, "runtime": 0.5}
    record = _record(logger, logging.INFO, msg, {**args, "return_value": STUDY_UID})
    assert PhiRedactingFilter().filter(record)
    assert record.getMessage().startswith(f"Task imports.tasks.scan_prefix[{task_id}] ")
    assert STUDY_UID not in record.getMessage()
    # A patient's name in a "name" argument is still redacted, from Celery's loggers too.
    for name in ("Doe^Jane", "Jane Doe", "DEMO0001"):
        record = _record(
            logger, logging.INFO, msg, {**args, "name": name, "return_value": None}
        )
        PhiRedactingFilter().filter(record)
        assert name not in record.getMessage()
    # And a dotted name outside Celery's loggers is not taken for a task.
    record = _record(
        "imports.x", logging.INFO, "%(name)s %(n)d", {"name": "jane.doe", "n": 1}
    )
    PhiRedactingFilter().filter(record)
    assert record.getMessage() == f"{REDACTED} 1"


def test_a_traceback_is_redacted_too() -> None:
    record = _record("imports.x", logging.ERROR, "failed", None, exc=True)
    PhiRedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text
    assert "Doe^Jane" not in text
    assert "1.2.826.0.1.3680043.8.498.10" not in text


@pytest.mark.parametrize(
    "name", ["botocore.endpoint", "urllib3.connectionpool", "django.db.backends"]
)
def test_libraries_that_echo_data_are_silenced_below_warning(name: str) -> None:
    patient_filter = PhiRedactingFilter()
    assert not patient_filter.filter(_record(name, logging.DEBUG, "GET /b/k", None))
    assert patient_filter.filter(_record(name, logging.WARNING, "retrying", None))
    assert patient_filter.filter(_record("imports.scanning", logging.DEBUG, "x", None))


def test_every_configured_handler_carries_the_filter() -> None:
    config: dict[str, Any] = settings.LOGGING
    assert config["filters"]["phi"]["()"] == "imports.phi_logging.PhiRedactingFilter"
    for name, handler in config["handlers"].items():
        assert "phi" in handler.get("filters", []), name
    root_handlers = [
        h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler
    ]
    assert root_handlers
    for handler in root_handlers:
        assert any(isinstance(f, PhiRedactingFilter) for f in handler.filters)


# --- A whole flow, everything at DEBUG -------------------------------------------------------


class _Capture:
    """The root logger's handlers replaced by one raw and one filtered capture, everything at DEBUG."""

    def __init__(self) -> None:
        self.raw = io.StringIO()
        self.filtered = io.StringIO()

    def __enter__(self) -> _Capture:
        root = logging.getLogger()
        self.saved = (root.handlers[:], root.level)
        self.levels = {}
        for name in (
            "botocore",
            "boto3",
            "urllib3",
            "s3transfer",
            "imports",
            "localaws",
        ):
            self.levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.DEBUG)
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        raw = logging.StreamHandler(self.raw)
        filtered = logging.StreamHandler(self.filtered)
        filtered.addFilter(PhiRedactingFilter())
        for handler in (raw, filtered):
            handler.setFormatter(formatter)
        # The raw capture first: the filter rewrites the record for the handlers after it.
        root.handlers = [raw, filtered]
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.handlers, level = self.saved
        root.setLevel(level)
        for name, previous in self.levels.items():
            logging.getLogger(name).setLevel(previous)


def test_a_full_flow_logs_no_patient_name_id_or_uid(localaws: object, db: None) -> None:
    with _Capture() as capture:
        call_command("seed_demo", stdout=io.StringIO())
        datastore = Datastore.objects.get()
        bucket, prefix = datastore.input_s3_uri.removeprefix("s3://").split("/", 1)
        scan, _ = control.scan_start(
            actor=None, bucket=bucket, prefix=prefix, region="us-east-1", enqueue=False
        )
        run.scan_run(scan_id=scan.pk)
        draft = drafts.draft_start(
            actor=None,
            datastore=datastore,
            input_s3_uri=datastore.input_s3_uri,
            output_s3_uri=datastore.output_s3_uri,
        )
        draft = drafts.draft_accept_suggestions(
            draft=draft, actor=None, version=draft.version
        )
        drafts.draft_validate(draft=draft)
        mapped = ImportDraft.objects.get(pk=draft.pk).mappings.first()
        assert mapped is not None
        series = ScanSeries.objects.filter(
            study__scan=draft.scan,
            study__study_instance_uid=mapped.study_instance_uid,
        ).first()
        assert series is not None
        series_preview(draft=draft, series=series)
        # A careless line, as a future change might write one.
        logging.getLogger("imports.scanning").warning(
            "Could not read incoming/%s/x.dcm of %s (PatientID=%s) in study %s",
            democorpus.JOHN.id,
            democorpus.JOHN.name,
            democorpus.JOHN.id,
            STUDY_UID,
        )
    raw, filtered = capture.raw.getvalue(), capture.filtered.getvalue()
    # The flow does write patient data at DEBUG (request URLs with keys named by patient)...
    assert "DEMO0001" in raw
    assert "Could not read" in filtered
    # ...and none of it gets through the filter.
    for value in [*PATIENT_NAMES, *PATIENT_IDS, STUDY_UID]:
        assert value not in filtered, value
    assert not re.search(r"\d+(\.\d+){4,}|2\.25\.\d+", filtered)


# --- The Celery worker ------------------------------------------------------------------------


@pytest.mark.worker
def test_the_worker_logs_no_patient_data(
    celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    done = tmp_path / "done"
    log_patient_data.apply_async(
        args=(marker, str(done)), queue=celery_worker_process.queue
    )
    wait_for(done.exists, timeout=30, what="the worker to run the logging task")
    wait_for(
        lambda: celery_worker_process.output().count(marker) >= 2,
        timeout=10,
        what=f"both log lines; the log:\n{celery_worker_process.output()[-3000:]}",
    )
    output = celery_worker_process.output()
    for value in ["Doe^Jane", "DEMO0001", "1.2.826.0.1.3680043.8.498.10"]:
        assert value not in output
