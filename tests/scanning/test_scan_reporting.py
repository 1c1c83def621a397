"""What a scan reports, said the same way on the page, in the CSV and by `manage.py scan`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from imports.models import Datastore, Scan
from imports.scanning import control, run
from imports.units import bytes_format
from localaws.server import LocalAWS
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.conftest import ROOT, _database_url_for_worker, _localaws_environment
from tests.scanning.test_browse_views import table_rows

STUDY = "1.2.826.0.1.3680043.8.498.9"


@pytest.fixture
def mixed_bucket(localaws: LocalAWSHandle) -> LocalAWSHandle:
    """1 DICOM file, 3 not DICOM, 1 unreadable, 2 JSON files of which 1 is valid."""
    localaws.create_bucket("mixed")
    localaws.put("s3://mixed/in/a.dcm", dicom_bytes(study=STUDY, series=STUDY + ".1"))
    for name in ("readme.txt", "notes.txt", "letter.pdf"):
        localaws.put(f"s3://mixed/in/{name}", b"plain text, not DICOM")
    localaws.put(
        "s3://mixed/in/cut.dcm", dicom_bytes(study=STUDY, series=STUDY + ".1")[:200]
    )
    localaws.put(
        "s3://mixed/in/good.json", {"0020000D": {"vr": "UI", "Value": [STUDY]}}
    )
    localaws.put("s3://mixed/in/bad.json", b"{not json")
    return localaws


def scan_of(prefix: str = "in/", **kwargs: Any) -> Scan:
    scan, _ = control.scan_start(
        actor=None,
        bucket="mixed",
        prefix=prefix,
        region="us-east-1",
        enqueue=False,
        **kwargs,
    )
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    assert result.status == Scan.Status.COMPLETED, result.error
    return result


def test_the_page_says_how_many_are_not_dicom_unreadable_and_valid_json(
    client_bob: Client, mixed_bucket: LocalAWSHandle
) -> None:
    scan = scan_of()
    content = client_bob.get(f"/scans/{scan.pk}/").content.decode()
    progress = content.split('id="scan-progress"')[1].split("</section>")[0]
    assert '<span class="tally">3 not DICOM, 1 unreadable</span>' in progress
    assert '<span class="tally">2 JSON files, 1 valid</span>' in progress
    assert (
        '<h2>Not DICOM or unreadable <span class="muted">(3 not DICOM, 1 unreadable)</span></h2>'
        in content
    )
    assert (
        '<h2>JSON metadata files <span class="muted">(2 JSON files, 1 valid)</span></h2>'
        in content
    )
    rows = table_rows(content)
    assert rows["in/readme.txt"][1] == "Not DICOM"
    assert rows["in/cut.dcm"][1] == "Unreadable"


def test_the_csv_uses_the_page_words_for_each_status(
    client_bob: Client, mixed_bucket: LocalAWSHandle
) -> None:
    scan = scan_of()
    response = client_bob.get(f"/scans/{scan.pk}/objects.csv")
    lines = b"".join(response.streaming_content).decode().splitlines()  # type: ignore[attr-defined]
    status = {line.split(",")[0]: line.split(",")[2] for line in lines[1:]}
    assert status == {
        "in/a.dcm": "Read",
        "in/bad.json": "Invalid DICOM JSON",
        "in/cut.dcm": "Unreadable",
        "in/good.json": "Valid DICOM JSON",
        "in/letter.pdf": "Not DICOM",
        "in/notes.txt": "Not DICOM",
        "in/readme.txt": "Not DICOM",
    }


def test_the_command_summary_uses_the_same_words(
    db: None, mixed_bucket: LocalAWSHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("scan", "s3://mixed/in/")
    out = capsys.readouterr().out
    assert (
        "  objects   7 (0 from the cache): 1 readable DICOM, 3 not DICOM, 1 unreadable\n"
        in out
    )
    assert "  JSON      2 JSON files, 1 valid\n" in out


def test_a_cli_scan_shows_its_datastore_and_the_command_line_as_origin(
    mixed_bucket: LocalAWSHandle,
    datastore: Datastore,
    client_bob: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("scan", "s3://mixed/in/", "--datastore", "Radiology")
    assert "  datastore Radiology (us-east-1)\n" in capsys.readouterr().out
    scan = Scan.objects.get()
    assert (scan.datastore, scan.origin) == (datastore, Scan.Origin.CLI)
    detail = client_bob.get(f"/scans/{scan.pk}/").content.decode()
    assert "For datastore “Radiology”" in detail
    assert "from the command line (manage.py scan)" in detail
    row = table_rows(client_bob.get("/scans/").content.decode())["s3://mixed/in/"]
    assert (row[1], row[-1]) == ("Radiology", "command line")


def test_sizes_are_decimal_like_the_aws_quota_on_page_and_cli(
    mixed_bucket: LocalAWSHandle,
    client_bob: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scan = scan_of()
    assert scan.max_bytes == 10 * 1000**3
    content = client_bob.get(f"/scans/{scan.pk}/").content.decode()
    # filesizeformat said 9.3 GB: binary units under a decimal name.
    assert '<td class="num">10 GB</td>' in content
    assert "9.3 GB" not in content
    call_command("scan", "s3://mixed/in/")
    assert f"size {bytes_format(scan.bytes_total)} of 10 GB" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (999, "999 bytes"),
        (1000, "1 kB"),
        (1_048_576, "1.05 MB"),
        (999_999, "1 MB"),
        (10 * 1000**3, "10 GB"),
        (8 * 1024**3, "8.59 GB"),
    ],
)
def test_one_helper_formats_sizes_in_decimal_units(size: int, text: str) -> None:
    assert bytes_format(size) == text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [["--json"], []])
def test_the_command_stops_quietly_when_its_reader_goes_away(
    mixed_bucket: LocalAWSHandle, localaws_server: LocalAWS, mode: list[str]
) -> None:
    """`manage.py scan … | head -1`: no BrokenPipeError traceback, and the exit status of the scan."""
    read_end, write_end = os.pipe()
    # The reader is gone before the command writes a line: every write meets a closed pipe.
    os.close(read_end)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url_for_worker(),
        "AWS_ENDPOINT_URL": localaws_server.endpoint_url,
        **_localaws_environment(),
    }
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "scan", "s3://mixed/in/", *mode],
            cwd=ROOT,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(write_end)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert result.returncode == 0, stderr
    assert Scan.objects.get().status == Scan.Status.COMPLETED
