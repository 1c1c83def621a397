"""DJANGO_LOG_FORMAT=json: one JSON object per line with the request's id and the task's, patient data redacted
as in plain lines; every answer carries X-Request-ID, the caller's when it is sane."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.test import Client

from config.log_format import JsonFormatter, request_id, request_id_from
from imports.phi_logging import REDACTED, PhiRedactingFilter
from tests.access.test_access_log import _answers, _free_port
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "DEMO0001"


class _JsonCapture:
    """A handler on the root logger as settings.LOGGING builds it under DJANGO_LOG_FORMAT=json."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(PhiRedactingFilter())

    def __enter__(self) -> _JsonCapture:
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)

    def lines(self) -> list[dict[str, Any]]:
        # Every line must parse: json.loads fails the test on the first that does not.
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log() -> Iterator[_JsonCapture]:
    with _JsonCapture() as capture:
        yield capture


# --- X-Request-ID ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sane", ["abc", "lb-7f3a.2_x", "A" * 64, "0123456789abcdef0123456789abcdef"]
)
def test_a_sane_request_id_is_kept(sane: str) -> None:
    assert request_id_from(sane) == sane


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "A" * 65,
        "abc def",
        "abc\ninjected line",
        '"}{"level": "CRITICAL',
        "<script>",
        "id;rm",
        "naïve",
    ],
)
def test_a_hostile_request_id_is_replaced(hostile: str) -> None:
    replaced = request_id_from(hostile)
    assert replaced != hostile
    assert len(replaced) == 32
    assert replaced.isalnum()


def test_every_answer_carries_a_request_id(client: Client) -> None:
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]
    assert request_id_from(first) == first
    assert first != second


def test_the_callers_sane_request_id_comes_back(client: Client) -> None:
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="lb-7f3a.2_x")
    assert response["X-Request-ID"] == "lb-7f3a.2_x"


def test_a_hostile_request_id_is_replaced_in_the_answer(client: Client) -> None:
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="x" * 65)
    assert response["X-Request-ID"] != "x" * 65
    assert len(response["X-Request-ID"]) == 32


def test_a_redirect_carries_a_request_id_too(client: Client) -> None:
    response = client.get("/scans/")
    assert response.status_code == 302
    assert response["X-Request-ID"]


# --- JSON lines --------------------------------------------------------------------------------


def test_a_line_logged_in_a_request_is_json_with_its_request_id(
    client_bob: Client, json_log: _JsonCapture
) -> None:
    # A Viewer asking for an Operator's page: imports.views.errors logs the refusal, inside the request.
    response = client_bob.get("/browse/", HTTP_X_REQUEST_ID="trace-42")
    assert response.status_code == 403
    assert response["X-Request-ID"] == "trace-42"
    refusal = next(
        line for line in json_log.lines() if line["logger"] == "imports.access"
    )
    assert refusal["request_id"] == "trace-42"
    assert refusal["task_id"] is None
    assert refusal["level"] == "INFO"
    assert refusal["message"].startswith("Refused GET /browse/ to user bob")
    assert refusal["time"].endswith("+00:00")


def test_a_line_logged_outside_a_request_has_no_request_id(
    client: Client, json_log: _JsonCapture
) -> None:
    client.get("/accounts/login/", HTTP_X_REQUEST_ID="over-now")
    # The id is forgotten when the response is closed, so a later line does not inherit it.
    assert request_id.get() is None
    logging.getLogger("imports.tests").info("after the request")
    (line,) = [
        entry for entry in json_log.lines() if entry["message"] == "after the request"
    ]
    assert line["request_id"] is None


def test_a_line_logged_in_a_task_carries_the_task_id(json_log: _JsonCapture) -> None:
    @current_app.task(name="tests.log_in_a_task")
    def log_in_a_task() -> None:
        logging.getLogger("imports.tests").info("inside the task")

    log_in_a_task.apply(task_id="task-1234")
    logging.getLogger("imports.tests").info("outside the task")
    by_message = {line["message"]: line for line in json_log.lines()}
    assert by_message["inside the task"]["task_id"] == "task-1234"
    assert by_message["outside the task"]["task_id"] is None


def test_patient_data_is_redacted_in_json_lines(json_log: _JsonCapture) -> None:
    logger = logging.getLogger("imports.tests")
    logger.warning(
        "PatientName=%s read from s3://bucket/%s/1.dcm", PATIENT_NAME, PATIENT_ID
    )
    logger.info("scan %s read %s objects", 42, 7)
    try:
        raise ValueError(f"PatientID={PATIENT_ID}")
    except ValueError:
        logger.exception("failed")
    text = json_log.stream.getvalue()
    assert PATIENT_NAME not in text
    assert PATIENT_ID not in text
    lines = json_log.lines()
    assert lines[0]["message"] == (
        f"PatientName={REDACTED} read from s3://bucket/{REDACTED}"
    )
    # What is not patient data stays as it was.
    assert lines[1]["message"] == "scan 42 read 7 objects"
    # A traceback stays on its one line, redacted.
    assert f"PatientID={REDACTED}" in lines[2]["exception"]
    assert len(text.splitlines()) == 3


def test_without_the_filter_the_formatter_alone_would_leak(
    json_log: _JsonCapture,
) -> None:
    """The redaction above is the filter's doing: the formatter writes what it is given."""
    record = logging.LogRecord(
        "imports.tests", logging.INFO, __file__, 1, "PatientID=%s", (PATIENT_ID,), None
    )
    assert PATIENT_ID in JsonFormatter().format(record)


# --- The settings, in a process of their own ---------------------------------------------------

_LOG_A_LINE = """
import logging, django
django.setup()
logging.getLogger("imports.tests").warning("PatientID=%s in s3://b/%s/x.dcm", "DEMO0001", "DEMO0001")
"""


def _run(log_format: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LOG_A_LINE],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_LOG_FORMAT": log_format,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_settings_write_json_lines_when_asked() -> None:
    result = _run("json")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["logger"] == "imports.tests"
    assert line["level"] == "WARNING"
    assert line["message"] == f"PatientID={REDACTED} in s3://b/{REDACTED}"
    assert {"time", "request_id", "task_id"} <= set(line)


def test_settings_write_plain_lines_by_default() -> None:
    result = _run("plain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        f"WARNING imports.tests PatientID={REDACTED} in s3://b/{REDACTED}"
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_settings_refuse_an_unknown_log_format() -> None:
    result = _run("xml")
    assert result.returncode != 0
    assert "DJANGO_LOG_FORMAT" in result.stderr


# --- gunicorn ----------------------------------------------------------------------------------


@pytest.fixture
def gunicorn_json(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    port = _free_port()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "config.wsgi",
            "--workers", "1", "--bind", f"127.0.0.1:{port}",
            "--access-logfile", str(access_log), "--error-logfile", str(error_log),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_LOG_FORMAT": "json",
        },
    )  # fmt: skip
    try:
        wait_for(
            lambda: process.poll() is not None or _answers(port),
            timeout=60,
            what="gunicorn to answer",
        )
        assert process.poll() is None, error_log.read_text()
        yield port, access_log, error_log
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorns_lines_are_json_with_the_request_id(
    gunicorn_json: tuple[int, Path, Path],
) -> None:
    port, access_log, error_log = gunicorn_json
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "GET", f"/browse/?uri=s3://b/{PATIENT_ID}/", headers={"X-Request-ID": "gw-1"}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.getheader("X-Request-ID") == "gw-1"

    wait_for(lambda: "gw-1" in access_log.read_text(), what="the access line")
    lines = [json.loads(text) for text in access_log.read_text().splitlines()]
    (line,) = [entry for entry in lines if entry["request_id"] == "gw-1"]
    assert line["logger"] == "gunicorn.access"
    assert "/browse/?uri=" in line["message"]
    assert PATIENT_ID not in access_log.read_text()
    # gunicorn's own lines (starting, booting a worker) are JSON too.
    assert all(json.loads(text) for text in error_log.read_text().splitlines())
