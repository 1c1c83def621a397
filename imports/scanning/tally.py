"""What a scan found, counted by outcome, in the one vocabulary of the page, the CSV and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from imports.models import ObjectHeader, Scan

Status = ObjectHeader.Status


@dataclass(frozen=True)
class ScanTally:
    dicom: int = 0
    not_dicom: int = 0
    unreadable: int = 0
    json_valid: int = 0
    json_invalid: int = 0

    @property
    def problems(self) -> int:
        """The objects under "Not DICOM or unreadable"."""
        return self.not_dicom + self.unreadable

    @property
    def json_files(self) -> int:
        return self.json_valid + self.json_invalid

    @property
    def problems_text(self) -> str:
        """ "3 not DICOM, 0 unreadable": both always, so a zero is never mistaken for the total."""
        return f"{self.not_dicom:,} not DICOM, {self.unreadable:,} unreadable"

    @property
    def json_text(self) -> str:
        """ "2 JSON files, 1 valid"."""
        files = self.json_files
        return (
            f"{files:,} JSON file{'' if files == 1 else 's'}, {self.json_valid:,} valid"
        )

    @property
    def dicom_text(self) -> str:
        return f"{self.dicom:,} readable DICOM"


def scan_tally(*, scan: Scan) -> ScanTally:
    """Count the objects a scan recorded by outcome (one GROUP BY query)."""
    counts = dict(
        ObjectHeader.objects.of_scan(scan)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return ScanTally(
        dicom=counts.get(Status.OK, 0),
        not_dicom=counts.get(Status.NOT_DICOM, 0),
        unreadable=counts.get(Status.UNREADABLE, 0),
        json_valid=counts.get(Status.JSON_VALID, 0),
        json_invalid=counts.get(Status.JSON_INVALID, 0),
    )
