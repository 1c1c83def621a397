"""The campaigns world: an archive that no single job of four files can take.

in/readme.txt                       not DICOM (skipped)
in/meta/study1.json                 study-level metadata for study 1 (skipped: a metadata file)
in/study1/series1/0..2.dcm          } study 1 spans two series folders; with the metadata file each
in/study1/series2/0..1.dcm          } folder is staged whole, with a copy of the file in each
in/flat/0..5.dcm                    one series of six files in one folder: staged in two jobs
in/study3/0..1.dcm                  a folder job at its own prefix
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imports.models import Datastore, Scan
from imports.scanning import control, run
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import dicom_json, make_localaws_datastore

ARCHIVE = "s3://archive/in/"
STAGING = "s3://staging/campaigns/"
STUDY1 = "1.2.826.0.1.3680043.8.498.71"
STUDY2 = "1.2.826.0.1.3680043.8.498.72"
STUDY3 = "1.2.826.0.1.3680043.8.498.73"
OBJECTS = 15
SKIPPED = 2


def seed_archive(localaws: LocalAWSHandle) -> None:
    for bucket in ("archive", "staging", "draft-out"):
        localaws.create_bucket(bucket)
    localaws.put(f"{ARCHIVE}readme.txt", b"exported by the old PACS")
    localaws.put(
        f"{ARCHIVE}meta/study1.json",
        json.dumps(
            dicom_json(
                **{"0020000D": ("UI", [STUDY1]), "00081030": ("LO", ["CT CHEST"])}
            )
        ),
    )
    for folder, study, series, count in (
        ("study1/series1/", STUDY1, STUDY1 + ".1", 3),
        ("study1/series2/", STUDY1, STUDY1 + ".2", 2),
        ("flat/", STUDY2, STUDY2 + ".1", 6),
        ("study3/", STUDY3, STUDY3 + ".1", 2),
    ):
        for n in range(count):
            localaws.put(
                f"{ARCHIVE}{folder}{n}.dcm",
                dicom_bytes(
                    study=study, series=series, sop=f"{series}.{n}", InstanceNumber=n
                ),
            )


def scan_archive() -> Scan:
    scan, _ = control.scan_start(
        actor=None, bucket="archive", prefix="in/", region="us-east-1", enqueue=False
    )
    done = run.scan_run(scan_id=scan.pk)
    assert done is not None
    assert done.status == Scan.Status.COMPLETED, done.error
    return done


@pytest.fixture
def archive(localaws: LocalAWSHandle) -> Datastore:
    seed_archive(localaws)
    scan_archive()
    return make_localaws_datastore(localaws)


@pytest.fixture
def mappings_csv(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.csv"
    path.write_text(
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{STUDY1},,meta/study1.json\n"
    )
    return path
