"""A scan listed from an S3 Inventory: no ListObjectsV2, the keys under the prefix, each problem named.

Inventories are built in localaws S3 in the documented layout: a manifest.json naming gzip CSV data files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imports.models import Scan, ScanObject
from imports.scanning import control, run
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = STUDY + ".1"
MANIFEST = "s3://inventories/scan-in/daily/2026-12-01T01-00Z/manifest.json"
MADE = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest"

pytestmark = pytest.mark.django_db


@pytest.fixture
def archive(localaws: LocalAWSHandle) -> LocalAWSHandle:
    localaws.create_bucket("scan-in")
    localaws.create_bucket("inventories")
    for i in range(3):
        localaws.put(
            f"s3://scan-in/incoming/{i}.dcm",
            dicom_bytes(study=STUDY, series=SERIES, InstanceNumber=i + 1),
        )
    localaws.put(
        "s3://scan-in/elsewhere/x.dcm", dicom_bytes(study=STUDY, series=SERIES)
    )
    localaws.put(
        "s3://scan-in/incoming/with space+plus.dcm",
        dicom_bytes(study=STUDY, series=SERIES),
    )
    return localaws


def _rows(localaws: LocalAWSHandle) -> list[list[str]]:
    listed = localaws.s3_client().list_objects_v2(Bucket="scan-in")["Contents"]
    rows = [
        [
            "scan-in",
            # Inventory CSV keys are URL-encoded.
            o["Key"].replace("%", "%25").replace("+", "%2B").replace(" ", "%20"),
            str(o["Size"]),
            "2026-11-30T10:00:00.000Z",
            o["ETag"].strip('"'),
            "true",
        ]
        for o in listed
    ]
    # An older version of a key that exists now: not the current object, left out.
    rows.append(
        [
            "scan-in",
            "incoming/0.dcm",
            "10",
            "2026-01-01T00:00:00.000Z",
            "0" * 32,
            "false",
        ]
    )
    return rows


def _gzip_csv(rows: list[list[str]]) -> bytes:
    text = StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows)
    return gzip.compress(text.getvalue().encode())


def put_inventory(
    localaws: LocalAWSHandle,
    *,
    files: dict[str, bytes] | None = None,
    **manifest: Any,
) -> None:
    files = (
        files if files is not None else {"data/one.csv.gz": _gzip_csv(_rows(localaws))}
    )
    for name, body in files.items():
        localaws.put(f"s3://inventories/scan-in/daily/{name}", body)
    document = {
        "sourceBucket": "scan-in",
        "destinationBucket": "arn:aws:s3:::inventories",
        "version": "2016-11-30",
        "creationTimestamp": str(int(MADE.timestamp() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": SCHEMA,
        "files": [
            {"key": f"scan-in/daily/{name}", "size": 1, "MD5checksum": "x"}
            for name in files
        ],
        **manifest,
    }
    localaws.put(MANIFEST, json.dumps(document).encode())


def scan_from(inventory: str = MANIFEST) -> Scan:
    scan, created = control.scan_start(
        actor=None,
        bucket="scan-in",
        prefix="incoming/",
        region="us-east-1",
        enqueue=False,
        inventory_uri=inventory,
    )
    assert created
    result = run.scan_run(scan_id=scan.pk)
    assert result is not None
    return result


def test_a_scan_from_an_inventory_lists_nothing_and_reads_the_keys_under_its_prefix(
    archive: LocalAWSHandle,
) -> None:
    put_inventory(archive)
    archive.clear_calls()
    scan = scan_from()
    assert scan.status == Scan.Status.COMPLETED, scan.error
    assert archive.calls("s3", "ListObjectsV2") == []
    assert scan.objects_listed == 4  # elsewhere/ left out, the old version left out
    keys = set(
        ScanObject.objects.filter(scan=scan).values_list("header__key", flat=True)
    )
    assert "incoming/with space+plus.dcm" in keys
    assert "elsewhere/x.dcm" not in keys
    assert scan.studies.get().instance_count == 4
    assert scan.inventory_created_at == MADE


def test_an_object_the_cache_holds_costs_no_get_when_listed_from_an_inventory(
    archive: LocalAWSHandle,
) -> None:
    put_inventory(archive)
    scan_from()
    archive.clear_calls()
    again = scan_from()
    assert again.objects_cached == 4
    # Only the manifest and its data file: no header is read again.
    assert len(archive.calls("s3", "GetObject")) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            {"files": {"data/gone.csv.gz": None}},
            "The inventory data file s3://inventories/scan-in/daily/data/gone.csv.gz that its "
            "manifest names does not exist",
        ),
        (
            {
                "files": {
                    "data/plain.csv.gz": b'"scan-in","incoming/0.dcm","1","x","y","true"\n'
                }
            },
            "The inventory data file s3://inventories/scan-in/daily/data/plain.csv.gz is not a gzip "
            "CSV file",
        ),
        (
            {"fileFormat": "Parquet"},
            "is in Parquet; only CSV inventories are read",
        ),
        (
            {"fileSchema": "Bucket, Key, LastModifiedDate"},
            "has no Size, ETag column",
        ),
        (
            {"sourceBucket": "another-bucket"},
            "lists bucket 'another-bucket', not 'scan-in'",
        ),
        (
            {"files": {}},
            "names no data file",
        ),
    ],
)
def test_an_inventory_that_cannot_stand_in_for_a_listing_fails_the_scan_saying_why(
    archive: LocalAWSHandle, setup: dict[str, Any], message: str
) -> None:
    files = setup.pop("files", None)
    if files is not None:
        present = {name: body for name, body in files.items() if body is not None}
        put_inventory(archive, files=present, **setup)
        if len(present) != len(files):  # name a data file that is not there
            document = json.loads(
                archive.s3_client()
                .get_object(Bucket="inventories", Key=MANIFEST.split("/", 3)[3])["Body"]
                .read()
            )
            document["files"] = [{"key": f"scan-in/daily/{n}"} for n in files]
            archive.put(MANIFEST, json.dumps(document).encode())
    else:
        put_inventory(archive, **setup)
    scan = scan_from()
    assert scan.status == Scan.Status.FAILED
    assert message in scan.error


def test_a_manifest_that_is_not_there_is_named(archive: LocalAWSHandle) -> None:
    scan = scan_from("s3://inventories/nothing/manifest.json")
    assert scan.status == Scan.Status.FAILED
    assert scan.error == (
        "The inventory manifest s3://inventories/nothing/manifest.json does not exist."
    )


def test_the_command_scans_from_an_inventory_and_says_so(
    archive: LocalAWSHandle,
) -> None:
    put_inventory(archive)
    out = io.StringIO()
    call_command("scan", "s3://scan-in/incoming/", "--inventory", MANIFEST, stdout=out)
    assert (
        f"listed    from the S3 Inventory {MANIFEST}, made 2026-12-01 01:00 UTC"
        in out.getvalue()
    )
    with pytest.raises(CommandError, match="--inventory lists the prefix anew"):
        call_command(
            "scan", "s3://scan-in/incoming/", "--inventory", MANIFEST, "--rest"
        )
    with pytest.raises(
        CommandError, match="give the s3:// URI of the inventory's manifest.json"
    ):
        call_command(
            "scan", "s3://scan-in/incoming/", "--inventory", "s3://inventories/x.csv"
        )
