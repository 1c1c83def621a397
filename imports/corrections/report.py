"""What `import_job corrections` prints for each row of a sheet, and the summary line. Patient values are masked.

One JSON object a line (`row_json`): row, status, study_instance_uid (None for a patient row that matches several
studies; study_instance_uids lists them all), series_instance_uid, changes; an error or unchanged row adds code and
message, an error row also every problem with its column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imports.corrections.matching import RowResult
from imports.corrections.sheet import Problem
from imports.corrections.write import WriteResult

# `import_job corrections --help`.
HELP = """A dry run of a correction sheet against the latest completed scan of the input prefix
(scanned first when it has none or it changed). Key columns: StudyInstanceUID; or AccessionNumber, narrowed by
PatientID and/or StudyDate; SeriesInstanceUID for a series-level row; or PatientID with Scope=patient for every
study of that patient. Value columns: a DICOM keyword or tag; name a key attribute's value column by its tag,
(0010,0020) for PatientID. An empty cell leaves a value as it is; <empty> clears it. Rows are numbered as the
spreadsheet shows them (the header is row 1).

Patient values (PatientName, PatientID, every person name and group 0010) are always masked in the output.
Without --write nothing is written. With --write --mappings-out FILE, each corrected study (or series) gets one
DICOM JSON file under the input prefix, metadata/corrections/<sheet id>/<UID>.json (the sheet id: the first 12 hex
digits of the sheet's sha256), written only where no file is or over the version the scan found; the files are
recorded in the scan and audited (tags, never values), and FILE gets their mappings, ready for
`import_job validate --mappings FILE` and `import_job submit --mappings FILE`. A row with an error, or a sheet that
corrects more than 1,000 studies, writes nothing.
Exit 0 when no row has an error ("unchanged" rows are warnings), 1 otherwise."""


def row_json(result: RowResult) -> dict[str, Any]:
    uids = result.study_instance_uids
    line: dict[str, Any] = {
        "row": result.row,
        "status": result.status,
        "scope": result.scope,
        "study_instance_uid": uids[0] if len(uids) == 1 else None,
        "study_instance_uids": uids,
        "series_instance_uid": result.series_instance_uid,
        "changes": [c.as_dict(masked=True) for c in result.changes],
    }
    if result.status != "ok":
        line["code"] = result.code
        line["message"] = result.message
    if result.problems:
        line["problems"] = [
            {"column": p.column, "code": p.code, "message": p.message}
            for p in result.problems
        ]
    return line


def refusal_json(problem: Problem) -> dict[str, Any]:
    """A sheet that cannot be read at all: a line with no row."""
    return {
        "row": problem.row,
        "status": "error",
        "column": problem.column,
        "code": problem.code,
        "message": problem.message,
    }


def row_lines(result: RowResult) -> list[str]:
    if result.status == "error":
        return [
            f"row {result.row}: error: {p.message} [{p.code}]" for p in result.problems
        ]
    uids = result.study_instance_uids
    if result.series_instance_uid:
        target = f"series {result.series_instance_uid} of study {uids[0]}"
    elif len(uids) == 1:
        target = f"study {uids[0]}"
    else:
        target = f"{len(uids)} studies ({', '.join(uids)})"
    head = f"row {result.row}: {result.status}: {target}"
    if result.status == "unchanged":
        head += f" (warning: {result.message})"
    lines = [head]
    for change in result.changes:
        shown = change.as_dict(masked=True)
        if shown["before"] is None:
            before = "not indexed by the scan"
        else:
            before = ", ".join(
                f"{_quoted(b['value'])} ×{b['count']}" for b in shown["before"]
            )
        after = _quoted(shown["after"]) if shown["after"] else "(cleared)"
        lines.append(
            f"  {change.keyword} ({change.tag[:4]},{change.tag[4:]}): {before} → {after}"
        )
    return lines


def summary_line(results: Sequence[RowResult]) -> str:
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("ok", "unchanged", "error")
    }
    rows = len(results)
    verdict = (
        "fix the errors; nothing was written."
        if counts["error"]
        else "nothing was written (a dry run)."
    )
    return (
        f"{rows} row{'s' if rows != 1 else ''}: {counts['ok']} to change, {counts['unchanged']} unchanged, "
        f"{counts['error']} with errors; {verdict}"
    )


def _quoted(value: Any) -> str:
    return "(empty)" if value in (None, "") else f"“{value}”"


def written_line(result: WriteResult, mappings_out: str) -> str:
    n = len(result.files)
    if not n:
        return f"No row changes anything: no file was written; {mappings_out} holds the header row only."
    rewritten = sum(bool(f.previous_etag) for f in result.files)
    return (
        f"Wrote {n} file{'s' if n != 1 else ''} under metadata/corrections/{result.sheet_id}/ "
        f"({rewritten} over an earlier version) and {n} mapping{'s' if n != 1 else ''} to {mappings_out}; "
        f"check them with: python manage.py import_job validate --datastore NAME --mappings {mappings_out}"
    )


def written_json(result: WriteResult, mappings_out: str) -> dict[str, Any]:
    """The last line with --write --json: no row, status "written"."""
    return {
        "row": None,
        "status": "written",
        "sheet_id": result.sheet_id,
        "files": [
            {
                "path": f.path,
                "study_instance_uid": f.study,
                "series_instance_uid": f.series or None,
                "etag": f.etag,
                "rewritten": bool(f.previous_etag),
                "tags_changed": f.tags_changed,
            }
            for f in result.files
        ],
        "mappings_out": mappings_out,
    }
