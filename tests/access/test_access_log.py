"""The access log keeps patient data out: query strings lose their values, in gunicorn's real access log and in
runserver's request lines, through the same patient filter as every other log."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imports.phi_logging import (
    REDACTED,
    PhiRedactingFilter,
    redact_query,
    redact_query_strings,
)
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
PATIENT_ID = "DEMO0001"
STUDY_UID = "2.25.329800735698586629295641978511506172918"
BROWSE = f"/browse/?uri=s3://demo-bucket/incoming/{PATIENT_ID}/&page=2"
REFERER = f"http://127.0.0.1/drafts/1/editor/?study={STUDY_UID}&path=metadata/{PATIENT_ID}.json"
# gunicorn's default format, plus the query atom and the response's Location header.
FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" q=%(q)s location=%({location}o)s'


@pytest.mark.parametrize(
    ("query", "redacted"),
    [
        ("uri=s3://b/incoming/DEMO0001/&page=2", f"uri={REDACTED}&page={REDACTED}"),
        (f"study={STUDY_UID}", f"study={REDACTED}"),
        ("DEMO0001", REDACTED),
        ("DEMO0001=x&path=a", f"{REDACTED}&path={REDACTED}"),
        ("next=%2Fbrowse%2F%3Furi%3DDEMO0001", f"next={REDACTED}"),
        ("", ""),
    ],
)
def test_a_query_keeps_its_lowercase_names_and_loses_every_value(
    query: str, redacted: str
) -> None:
    assert redact_query(query) == redacted


def test_every_url_in_a_line_loses_its_query_and_keeps_its_path() -> None:
    line = f'"GET {BROWSE} HTTP/1.1" 302 0 "{REFERER}"'
    assert redact_query_strings(line) == (
        f'"GET /browse/?uri={REDACTED}&page={REDACTED} HTTP/1.1" 302 0 '
        f'"http://127.0.0.1/drafts/1/editor/?study={REDACTED}&path={REDACTED}"'
    )


def _record(name: str, msg: str, args: Any) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_runserver_request_lines_lose_their_query_values() -> None:
    record = _record("django.server", '"%s" %s %s', (f"GET {BROWSE} HTTP/1.1", 302, 0))
    assert PhiRedactingFilter().filter(record)
    message = record.getMessage()
    assert PATIENT_ID not in message
    assert f"/browse/?uri={REDACTED}" in message


def test_other_loggers_keep_their_question_marks() -> None:
    record = _record("imports.scanning", "what is %s?a=1", ("this",))
    assert PhiRedactingFilter().filter(record)
    assert record.getMessage() == "what is this?a=1"


def test_a_mapping_argument_with_nothing_to_redact_keeps_its_own_lookup() -> None:
    class Atoms(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            return super().get(key, "-")

    record = _record("gunicorn.access", "%(s)s %({x-missing}i)s", Atoms(s="200"))
    assert PhiRedactingFilter().filter(record)
    assert record.getMessage() == "200 -"


# --- gunicorn, as the README's Production section runs it -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/accounts/login/")
        connection.getresponse().read()
        connection.close()
    except OSError:
        return False
    return True


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    port = _free_port()
    access_log = tmp_path / "access.log"
    # No -c: gunicorn reads ./gunicorn.conf.py from the directory it starts in, the project's root.
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "config.wsgi",
            "--workers", "1", "--bind", f"127.0.0.1:{port}",
            "--access-logfile", str(access_log),
            "--access-logformat", FORMAT,
            "--error-logfile", str(tmp_path / "error.log"),
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )  # fmt: skip
    try:
        wait_for(
            lambda: process.poll() is not None or _answers(port),
            timeout=60,
            what="gunicorn to answer",
        )
        assert process.poll() is None, (tmp_path / "error.log").read_text()
        yield port, access_log, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorns_access_log_carries_paths_and_no_patient_id_or_uid(
    gunicorn: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, access_log, _ = gunicorn
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", BROWSE, headers={"Referer": REFERER})
    response = connection.getresponse()
    response.read()
    connection.close()
    # Signed out: the sign-in page, whose Location names the page asked for, query and all.
    assert response.status == 302
    assert PATIENT_ID in response.getheader("Location", "")

    wait_for(
        lambda: "/browse/" in access_log.read_text(),
        what="the request in the access log",
    )
    line = next(
        line for line in access_log.read_text().splitlines() if "/browse/" in line
    )
    assert PATIENT_ID not in line
    assert STUDY_UID not in line
    assert f'"GET /browse/?uri={REDACTED}&page={REDACTED} HTTP/1.1" 302' in line
    assert f"/drafts/1/editor/?study={REDACTED}&path={REDACTED}" in line
    assert f"q=uri={REDACTED}&page={REDACTED}" in line
    assert f"location=/accounts/login/?next={REDACTED}" in line
