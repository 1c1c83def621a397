"""Mappings as CSV (studyInstanceUID,seriesInstanceUID,metadataFilePath): how large migrations are prepared.

Pure: no Django. The same reader serves the composer's upload and `manage.py import_job validate`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from imports.mappings.rules import (
    MAX_MAPPINGS,
    Mapping,
    Problem,
    metadata_path_problem,
    uid_field_problem,
)

CSV_COLUMNS = ["studyInstanceUID", "seriesInstanceUID", "metadataFilePath"]
# A CSV of 1,000 mappings is about 150 KB; anything far larger is not a mapping file.
CSV_MAX_BYTES = 2 * 1024 * 1024


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"); the
# dashboard's CSV exports prefix such cells with a quote (imports.views.common.csv_cell).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_unguard(cell: str) -> str:
    """A cell as it was before the export's formula guard: "'=x" was "=x", "''=x" was "'=x".

    The guard quotes any cell whose quotes are followed by a formula character, so removing one quote
    from exactly those cells gives back the value, however many quotes it began with.
    """
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def csv_guard(cell: str) -> str:
    """The export's formula guard, which `csv_unguard` undoes: a quote before a cell a spreadsheet would run."""
    return "'" + cell if cell.lstrip("'").startswith(FORMULA_STARTS) else cell


def mappings_csv_text(mappings: Sequence[Mapping]) -> str:
    """Mappings as the CSV `mappings_read_csv` reads back: the header row, then one row per mapping."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for mapping in mappings:
        writer.writerow(
            [
                mapping.study_instance_uid,
                mapping.series_instance_uid,
                csv_guard(mapping.metadata_file_path),
            ]
        )
    return out.getvalue()


class CsvRefused(Exception):
    """The CSV cannot be used; `problems` say why, row by row. Nothing may be applied from it."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def mappings_read_csv(data: bytes, *, check_fields: bool = True) -> list[Mapping]:
    """Parse a mappings CSV (header row `studyInstanceUID,seriesInstanceUID,metadataFilePath`).

    Refuses the whole file, with every problem by row, when anything is wrong: a half-applied spreadsheet is
    worse than none. A UTF-8 byte order mark (as spreadsheets write it) is accepted. With `check_fields=False`
    only the file's shape is checked, for a caller that runs the full validation on the rows next.
    """
    if len(data) > CSV_MAX_BYTES:
        raise CsvRefused(
            f"The CSV is {len(data):,} bytes; a mappings CSV of {MAX_MAPPINGS:,} rows is far smaller "
            f"(at most {CSV_MAX_BYTES:,} bytes are read)."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:1024]:
        raise CsvRefused(
            "The CSV is not UTF-8 text (it looks like UTF-16 or a binary file); "
            "save it as “CSV UTF-8” and upload it again."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvRefused(
            f"The CSV is not UTF-8 text (byte 0x{data[error.start]:02X} at offset {error.start:,}); "
            "save it as “CSV UTF-8” and upload it again."
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as error:
        raise CsvRefused(f"The CSV cannot be read: {error}.") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise CsvRefused(
            f"The CSV is empty; it needs the header row {','.join(CSV_COLUMNS)} and one row per mapping."
        )
    header = [cell.strip() for cell in rows[0]]
    if header != CSV_COLUMNS:
        raise CsvRefused(
            f"The first row must be exactly {','.join(CSV_COLUMNS)} (the header row); "
            f"it has {len(header)} column{'s' if len(header) != 1 else ''} "
            + ("with other names." if len(header) == 3 else "instead.")
        )
    body = rows[1:]
    if len(body) > MAX_MAPPINGS:
        raise CsvRefused(
            f"The CSV has {len(body):,} mappings; an import job takes at most {MAX_MAPPINGS:,}. "
            "Split it into several imports."
        )
    problems: list[Problem] = []
    mappings: list[Mapping] = []
    first_row: dict[tuple[str, str], int] = {}
    for number, row in enumerate(body, start=1):
        if len(row) != 3:
            problems.append(
                Problem(
                    "error",
                    number,
                    "",
                    "csv_columns",
                    f"Row {number} has {len(row)} columns; each row has exactly 3: {','.join(CSV_COLUMNS)}.",
                )
            )
            continue
        # UIDs are trimmed (spreadsheets pad cells); a path is kept exactly, so that validation can say
        # what is wrong with it rather than the import silently using another name.
        study, series = row[0].strip(), row[1].strip()
        # An exported path that began with a formula character carries the export's guard quote.
        path = csv_unguard(row[2])
        mappings.append(Mapping(study, series, path))
        if not check_fields:
            continue
        for field, value, required in (
            ("studyInstanceUID", study, True),
            ("seriesInstanceUID", series, False),
        ):
            if value or required:
                problem = uid_field_problem(value)
                if problem is not None:
                    problems.append(Problem("error", number, field, *problem))
        path_problem = metadata_path_problem(path)
        if path_problem is not None:
            problems.append(Problem("error", number, "metadataFilePath", *path_problem))
        if (study, series) in first_row:
            problems.append(
                Problem(
                    "error",
                    number,
                    "seriesInstanceUID" if series else "studyInstanceUID",
                    "duplicate_mapping",
                    f"Row {number} maps the same {'series' if series else 'study'} as row "
                    f"{first_row[(study, series)]}; each study or series takes one file.",
                )
            )
        first_row.setdefault((study, series), number)
    if problems:
        raise CsvRefused(
            f"The CSV was not applied: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            "(nothing was saved).",
            problems,
        )
    return mappings
