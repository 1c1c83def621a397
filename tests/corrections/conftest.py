"""The corrections world: six studies under the composer tests' prefix, scanned from localaws over HTTP.

- ZEROS: accession 0012345 and patient 000987, its two instances spelling StudyDescription two ways;
- TWIN_A and TWIN_B: the same accession DUP on the same date, told apart only by PatientID;
- MERGE_1..3: three studies of patient PAT-M (a merge), MERGE_1 with two series;
- SAME_1 and SAME_2: the same accession, patient and date: only their UIDs tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imports.models import Datastore, Scan
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import BUCKET, INPUT, make_datastore, scan_prefix

ROOT = "1.2.826.0.1.3680043.8.498.77"
ZEROS = f"{ROOT}.1"
TWIN_A = f"{ROOT}.2"
TWIN_B = f"{ROOT}.3"
MERGE_1 = f"{ROOT}.4"
MERGE_2 = f"{ROOT}.5"
MERGE_3 = f"{ROOT}.6"
MERGE_1_SERIES_2 = f"{MERGE_1}.2"
SAME_1 = f"{ROOT}.7"
SAME_2 = f"{ROOT}.8"

# study -> (accession, patient ID, study date, [(series, [StudyDescription of each instance])])
STUDIES = {
    ZEROS: ("0012345", "000987", "20240102", [(f"{ZEROS}.1", ["CT HEAD", "CT Head"])]),
    TWIN_A: ("DUP", "PAT-A", "20240103", [(f"{TWIN_A}.1", ["MR KNEE"])]),
    TWIN_B: ("DUP", "PAT-B", "20240103", [(f"{TWIN_B}.1", ["MR KNEE"])]),
    MERGE_1: (
        "M1",
        "PAT-M",
        "20240104",
        [(f"{MERGE_1}.1", ["CT CHEST"]), (MERGE_1_SERIES_2, ["CT CHEST", "CT CHEST"])],
    ),
    MERGE_2: ("M2", "PAT-M", "20240105", [(f"{MERGE_2}.1", ["CT CHEST"])]),
    MERGE_3: ("M3", "PAT-M", "20240106", [(f"{MERGE_3}.1", ["CT CHEST"])]),
    SAME_1: ("SAME", "PAT-S", "20240107", [(f"{SAME_1}.1", ["XR"])]),
    SAME_2: ("SAME", "PAT-S", "20240107", [(f"{SAME_2}.1", ["XR"])]),
}


@pytest.fixture
def store(db: None, localaws: LocalAWSHandle) -> Datastore:
    localaws.create_bucket(BUCKET)
    for study, (accession, patient, date, series_list) in STUDIES.items():
        for number, (series, descriptions) in enumerate(series_list, start=1):
            for instance, description in enumerate(descriptions, start=1):
                localaws.put(
                    f"{INPUT}{series}/{instance}.dcm",
                    dicom_bytes(
                        study=study,
                        series=series,
                        sop=f"{series}.{instance}",
                        AccessionNumber=accession,
                        PatientID=patient,
                        PatientName=f"Patient^{patient}",
                        StudyDate=date,
                        StudyDescription=description,
                        SeriesNumber=number,
                        SeriesDescription=f"series {number}",
                        InstanceNumber=instance,
                    ),
                )
    return make_datastore()


@pytest.fixture
def scan(store: Datastore) -> Scan:
    return scan_prefix()


@pytest.fixture
def write_sheet(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "sheet.csv"
        path.write_text(text, encoding="utf-8")
        return path

    return write
