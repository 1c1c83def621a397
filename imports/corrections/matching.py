"""A correction sheet's rows matched against a completed scan's index: each to exactly one study, series or patient.

The index is read whole (two queries, plus one per indexed attribute whose instances disagree and that a row
changes, for the counts); matching is then done in memory, so a 1,000-row sheet costs no query per row.

Every problem refuses its row and names the row and the column. Messages never quote a patient value: a
PatientID key is shown masked (`mask_value`), as the command's output shows every patient value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from imports.corrections.sheet import Column, Problem, Sheet, SheetRow, Value
from imports.dicom.patient import is_patient_attribute, mask_value
from imports.models import ObjectHeader, Scan, ScanSeries, ScanStudy
from imports.scanning.index import SERIES_ATTRIBUTES, STUDY_ATTRIBUTES

STATUSES = ("ok", "unchanged", "error")
# The narrowing keys, in the order a message suggests them.
NARROWING = ("PatientID", "StudyDate")
_SHOWN_UIDS = 5


@dataclass
class Change:
    keyword: str
    tag: str  # 8 hex digits
    vr: str
    # The values the scan indexed across the target's instances, most common first, with their counts;
    # None when the scan does not index this attribute at this level.
    before: list[dict[str, Any]] | None
    after: str  # "" clears the attribute

    @property
    def patient(self) -> bool:
        return is_patient_attribute(int(self.tag, 16), self.vr)

    @property
    def unchanged(self) -> bool:
        return (
            self.before is not None
            and len(self.before) == 1
            and _text(self.before[0]["value"]) == self.after
        )

    def as_dict(self, *, masked: bool = True) -> dict[str, Any]:
        hide = masked and self.patient
        before = (
            None
            if self.before is None
            else [
                {
                    "value": mask_value(_text(b["value"])) if hide else b["value"],
                    "count": b["count"],
                }
                for b in self.before
            ]
        )
        return {
            "keyword": self.keyword,
            "tag": self.tag,
            "vr": self.vr,
            "before": before,
            "after": mask_value(self.after) if hide else self.after,
        }


@dataclass
class RowResult:
    row: int
    status: str = "ok"
    study_instance_uids: list[str] = field(default_factory=list)
    series_instance_uid: str | None = None
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    scope: str = "study"

    @property
    def message(self) -> str:
        if self.problems:
            return self.problems[0].message
        if self.status == "unchanged":
            return (
                f"Row {self.row} changes nothing: every value it sets is what the scan found in "
                f"{_studies(len(self.study_instance_uids))}."
            )
        return ""

    @property
    def code(self) -> str:
        return self.problems[0].code if self.problems else self.status


@dataclass
class _Series:
    uid: str
    study: _Study
    instance_count: int
    values: dict[str, Any]
    variants: dict[str, list[Any]]


@dataclass
class _Study:
    uid: str
    instance_count: int
    values: dict[str, Any]
    variants: dict[str, list[Any]]
    series: dict[str, _Series] = field(default_factory=dict)

    def spellings(self, keyword: str) -> list[str]:
        """Every value the study's instances hold for an indexed attribute, as text."""
        return [_text(v) for v in self.variants.get(keyword) or [self.values[keyword]]]


class _Index:
    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.studies: dict[str, _Study] = {}
        self.by_key: dict[str, dict[str, list[_Study]]] = {
            "AccessionNumber": defaultdict(list),
            "PatientID": defaultdict(list),
        }
        self.series: dict[str, list[_Series]] = defaultdict(list)
        self._counts: dict[tuple[str, str], dict[str, dict[Any, int]]] = {}
        columns = list(STUDY_ATTRIBUTES.values())
        for row in ScanStudy.objects.filter(scan=scan).values(
            "study_instance_uid", "instance_count", "variants", *columns
        ):
            study = _Study(
                uid=row["study_instance_uid"],
                instance_count=row["instance_count"],
                values={k: row[c] for k, c in STUDY_ATTRIBUTES.items()},
                variants=row["variants"] or {},
            )
            self.studies[study.uid] = study
            for keyword, lookup in self.by_key.items():
                for text in set(study.spellings(keyword)):
                    lookup[text].append(study)
        columns = list(SERIES_ATTRIBUTES.values())
        for row in ScanSeries.objects.filter(study__scan=scan).values(
            "study__study_instance_uid",
            "series_instance_uid",
            "instance_count",
            "variants",
            *columns,
        ):
            parent = self.studies[row["study__study_instance_uid"]]
            series = _Series(
                uid=row["series_instance_uid"],
                study=parent,
                instance_count=row["instance_count"],
                values={k: row[c] for k, c in SERIES_ATTRIBUTES.items()},
                variants=row["variants"] or {},
            )
            parent.series[series.uid] = series
            self.series[series.uid].append(series)

    def counts(self, target: _Study | _Series, keyword: str) -> dict[Any, int]:
        """How many of the target's instances hold each value of an indexed attribute."""
        if keyword not in target.variants:
            return {target.values[keyword]: target.instance_count}
        level = "study" if isinstance(target, _Study) else "series"
        if (level, keyword) not in self._counts:
            self._counts[level, keyword] = self._count(level, keyword)
        return self._counts[level, keyword].get(target.uid, {})

    def _count(self, level: str, keyword: str) -> dict[str, dict[Any, int]]:
        """One query: the value counts of every study (or series) of the scan whose instances disagree."""
        attributes = STUDY_ATTRIBUTES if level == "study" else SERIES_ATTRIBUTES
        column = attributes[keyword]
        uid_column = f"{level}_instance_uid"
        targets: Iterable[_Study | _Series] = (
            self.studies.values()
            if level == "study"
            else [s for group in self.series.values() for s in group]
        )
        uids = [t.uid for t in targets if keyword in t.variants]
        found: dict[str, dict[Any, int]] = defaultdict(dict)
        rows = (
            ObjectHeader.objects.of_scan(self.scan)
            .filter(kind=ObjectHeader.Kind.DICOM, status=ObjectHeader.Status.OK)
            .filter(**{f"{uid_column}__in": uids})
            .values(uid_column, column)
            .annotate(n=Count("pk"))
        )
        for row in rows:
            found[row[uid_column]][row[column]] = row["n"]
        return found


def corrections_match(*, scan: Scan, sheet: Sheet) -> list[RowResult]:
    """Each row's match and changes, or its problems; then the conflicts between rows and the rows that change nothing."""
    index = _Index(scan)
    by_key = {c.key: c for c in sheet.columns if c.key}
    results = []
    for row in sheet.rows:
        result = RowResult(row=row.number, scope=row.scope)
        if row.problems:
            result.problems = list(row.problems)
        else:
            _match(index, row, by_key, result)
        results.append(result)
    _conflicts(sheet.rows, results)
    for result in results:
        if result.problems:
            result.status = "error"
        elif result.changes and all(c.unchanged for c in result.changes):
            result.status = "unchanged"
    return results


# --- One row ----------------------------------------------------------------------------------------


def _match(
    index: _Index, row: SheetRow, by_key: dict[str, Column], result: RowResult
) -> None:
    keys = row.keys
    if row.scope == "patient":
        primary = "PatientID"
        candidates = list(index.by_key["PatientID"].get(keys["PatientID"], []))
    elif keys.get("StudyInstanceUID"):
        primary = "StudyInstanceUID"
        found = index.studies.get(keys["StudyInstanceUID"])
        candidates = [found] if found else []
    elif row.scope == "series" or keys.get("SeriesInstanceUID"):
        primary = "SeriesInstanceUID"
        candidates = [s.study for s in index.series.get(keys[primary], [])]
    else:
        primary = "AccessionNumber"
        candidates = list(index.by_key[primary].get(keys[primary], []))
    column = by_key[primary]
    if not candidates:
        result.problems.append(
            _problem(row, column, "no_match", _nothing(index, primary, keys[primary]))
        )
        return
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber", *NARROWING):
        if key == primary or not keys.get(key) or row.scope == "patient":
            continue
        narrowed = [s for s in candidates if _agrees(s, key, keys[key])]
        if not narrowed:
            matched = (
                f"{_shown(primary, keys[primary])} matches {_studies(len(candidates))}"
            )
            result.problems.append(
                _problem(
                    row,
                    by_key[key],
                    "no_match",
                    _sentence(
                        f"{matched}, but none has {_shown(key, keys[key])}"
                        + _zeros_hint(
                            [v for s in candidates for v in _key_texts(s, key)],
                            keys[key],
                            key,
                        )
                    ),
                )
            )
            return
        candidates = narrowed
    if row.scope != "patient" and len(candidates) > 1:
        result.problems.append(
            _problem(
                row, column, "several_matches", _several(keys, primary, candidates)
            )
        )
        return
    result.study_instance_uids = sorted(s.uid for s in candidates)
    if primary == "SeriesInstanceUID" and row.scope != "study":
        result.series_instance_uid = keys[primary]
        series = [candidates[0].series[keys[primary]]]
        result.changes = [_change(index, value, [], series) for value in row.values]
    else:
        result.changes = [_change(index, value, candidates, []) for value in row.values]


def _agrees(study: _Study, key: str, text: str) -> bool:
    if key == "StudyInstanceUID":
        return study.uid == text
    if key == "SeriesInstanceUID":
        return text in study.series
    return text in study.spellings(key)


def _key_texts(study: _Study, key: str) -> list[str]:
    return study.spellings(key) if key in STUDY_ATTRIBUTES else []


def _nothing(index: _Index, key: str, text: str) -> str:
    noun = "series" if key == "SeriesInstanceUID" else "study"
    known = list(index.by_key[key]) if key in index.by_key else []
    return _sentence(
        f"no {noun} has {_shown(key, text)}" + _zeros_hint(known, text, key)
    )


def _zeros_hint(known: Iterable[str], text: str, key: str) -> str:
    """'; 0012345 does — were leading zeros lost?' when the key matches only with its leading zeros put back."""
    if not text.isdigit():
        return ""
    padded = sorted(
        {
            k
            for k in known
            if k != text and k.isdigit() and k.lstrip("0") == text.lstrip("0")
        }
    )
    if not padded:
        return ""
    shown = " and ".join(_shown_value(key, k) for k in padded[:3])
    return (
        f"; {shown} {'does' if len(padded) == 1 else 'do'} — were leading zeros lost?"
    )


def _several(keys: dict[str, str], primary: str, candidates: Sequence[_Study]) -> str:
    uids = sorted(s.uid for s in candidates)
    listed = ", ".join(uids[:_SHOWN_UIDS]) + (", …" if len(uids) > _SHOWN_UIDS else "")
    deciding = [
        key
        for key in NARROWING
        if not keys.get(key)
        and len({_text(s.values[key]) for s in candidates}) == len(candidates)
    ]
    if deciding:
        advice = " or ".join(deciding) + " would decide: fill it"
    else:
        advice = "neither PatientID nor StudyDate tells them apart: key the row by StudyInstanceUID"
    return f"{_shown(primary, keys[primary])} matches {len(candidates)} studies ({listed}); {advice}."


def _change(
    index: _Index, value: Value, studies: Sequence[_Study], series: Sequence[_Series]
) -> Change:
    info = value.info
    keyword = info.keyword
    targets: list[_Study | _Series] = []
    if series and keyword in SERIES_ATTRIBUTES:
        targets = list(series)
    elif studies and keyword in STUDY_ATTRIBUTES:
        targets = list(studies)
    elif studies and keyword in SERIES_ATTRIBUTES:
        targets = [s for study in studies for s in study.series.values()]
    before: list[dict[str, Any]] | None = None
    if targets:
        totals: dict[Any, int] = defaultdict(int)
        for target in targets:
            for found, count in index.counts(target, keyword).items():
                totals[found] += count
        ranked = sorted(totals, key=lambda v: (-totals[v], _text(v)))
        before = [{"value": v, "count": totals[v]} for v in ranked]
    return Change(
        keyword=keyword, tag=info.key, vr=info.vr, before=before, after=value.text
    )


# --- Between rows -----------------------------------------------------------------------------------


def _conflicts(rows: Sequence[SheetRow], results: Sequence[RowResult]) -> None:
    """Two rows that set different values of one attribute on the same study (or series) are both refused."""
    claims: dict[tuple[str, str], list[tuple[SheetRow, RowResult, Value]]] = (
        defaultdict(list)
    )
    for row, result in zip(rows, results, strict=True):
        if result.problems:
            continue
        for value in row.values:
            for uid in result.study_instance_uids:
                claims[uid, value.info.key].append((row, result, value))
    refused: set[tuple[int, int]] = set()
    for (uid, _tag), claim in claims.items():
        for i, (row_a, result_a, value_a) in enumerate(claim):
            for row_b, result_b, value_b in claim[i + 1 :]:
                apart = (
                    result_a.series_instance_uid
                    and result_b.series_instance_uid
                    and result_a.series_instance_uid != result_b.series_instance_uid
                )
                if apart or value_a.text == value_b.text or row_a is row_b:
                    continue
                for row, value, other, other_value in (
                    (row_a, value_a, row_b, value_b),
                    (row_b, value_b, row_a, value_a),
                ):
                    if (row.number, value.column.index) in refused:
                        continue
                    refused.add((row.number, value.column.index))
                    result = result_a if row is row_a else result_b
                    shown = (
                        "a different value"
                        if value.column.is_patient
                        else f"'{other_value.text}'"
                        if other_value.text
                        else "empty"
                    )
                    result.problems.append(
                        _problem(
                            row,
                            value.column,
                            "conflict",
                            f"row {other.number} sets {value.info.keyword} of study {uid} to {shown}; "
                            "give each study one value (one row per study, or the same value in both rows).",
                        )
                    )


# --- Words ------------------------------------------------------------------------------------------


def _problem(row: SheetRow, column: Column, code: str, what: str) -> Problem:
    return Problem(
        row.number, column.header, code, f"{column.where(row.number)}: {what}"
    )


def _shown(key: str, text: str) -> str:
    return f"{key} {_shown_value(key, text)}"


def _shown_value(key: str, text: str) -> str:
    return mask_value(text) if key == "PatientID" else text


def _sentence(text: str) -> str:
    return text if text.endswith("?") else text + "."


def _studies(n: int) -> str:
    return f"{n} {'study' if n == 1 else 'studies'}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)
