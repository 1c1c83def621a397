"""What the composer shows: the study/series tree with each mapping's state, the problems, the suggestions.

Read-only; changes go through imports.drafts.services. Built in a fixed number of queries, whatever the size of the draft.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import Prefetch

from imports.drafts.services import draft_validate
from imports.drafts.suggestions import Suggestion, draft_suggestions
from imports.mappings.rules import Problem
from imports.models import (
    DraftMapping,
    ImportDraft,
    Scan,
    ScanSeries,
    ScanStudy,
)
from imports.scanning.lookup import prefix_index

# Rows a page shows: the page stays quick with a 1,000-mapping draft (bench/composer_bench.py).
STUDIES_PER_PAGE = 50
ROWS_PER_PAGE = 100
PROBLEMS_SHOWN = 100


def rows_page_of(row: int) -> int:
    """The page of the mappings table that holds a 1-based row."""
    return (row - 1) // ROWS_PER_PAGE + 1


@dataclass
class MappingState:
    row: int
    mapping: DraftMapping
    problems: list[Problem]

    @property
    def page(self) -> int:
        return rows_page_of(self.row)

    @property
    def state(self) -> str:
        if any(p.severity == "error" for p in self.problems):
            return "error"
        return "warning" if self.problems else "valid"


@dataclass(frozen=True)
class TreeSeries:
    series: ScanSeries
    target: str  # "study|series", the value of its checkbox
    mapped: MappingState | None


@dataclass(frozen=True)
class TreeStudy:
    study: ScanStudy
    target: str  # "study|"
    mapped: MappingState | None
    series: list[TreeSeries]


@dataclass(frozen=True)
class StudyContext:
    """What names a study to a reader next to its bare UID: the scan's date, description and modalities."""

    date: str  # DICOM DA, YYYYMMDD, or ""
    description: str
    modalities: tuple[
        str, ...
    ]  # its series', sorted; a series mapping names its own only


@dataclass
class Composer:
    draft: ImportDraft
    studies: list[TreeStudy]  # this page's
    studies_page: Page[ScanStudy] | None
    rows: list[MappingState]  # this page's
    rows_page: Page[MappingState]
    row_count: int
    by_target: dict[tuple[str, str], MappingState]
    problems: list[Problem]
    suggestions: list[Suggestion]
    json_files: list[tuple[str, str, str]]  # (path, status, first error)
    # Studies mapped at both levels: the series file wins for the attributes it names.
    both_levels: dict[str, list[str]]
    # The shown problems' rows, named by their study (not in the scan: no entry).
    row_contexts: dict[int, StudyContext] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == "warning" for p in self.problems)

    @property
    def shown_problems(self) -> list[tuple[Problem, int, StudyContext | None]]:
        """The first problems, each with the page of the mappings table that holds its row, and its study."""
        return [
            (
                p,
                rows_page_of(p.row) if p.row else 1,
                self.row_contexts.get(p.row) if p.row else None,
            )
            for p in self.problems[:PROBLEMS_SHOWN]
        ]

    @property
    def more_problems(self) -> int:
        return max(0, len(self.problems) - PROBLEMS_SHOWN)


# What the tree shows; the rest of a scan's study and series rows (variants of every attribute, transfer
# syntaxes) stays in the database.
TREE_STUDY_FIELDS = (
    "scan_id", "study_instance_uid", "study_description", "study_date", "instance_count", "variants",
)  # fmt: skip
TREE_SERIES_FIELDS = (
    "study_id", "series_instance_uid", "series_number", "series_description", "modality",
    "instance_count", "variants",
)  # fmt: skip


def draft_composer(
    *, draft: ImportDraft, studies_page: str | int = 1, rows_page: str | int = 1
) -> Composer:
    """Everything the composer page shows, in a fixed number of queries whatever the size of the draft.

    The tree and the mappings table are paged; validation, suggestions and "which file wins" cover the
    whole draft.
    """
    mappings = list(draft.mappings.all())
    scan = draft.scan
    completed = scan is not None and scan.status == Scan.Status.COMPLETED
    index = (
        prefix_index(scan=scan, datastore=draft.datastore)
        if completed and scan is not None
        else None
    )
    study_pages = (
        Paginator(
            ScanStudy.objects.filter(scan=scan)
            .only(*TREE_STUDY_FIELDS)
            .prefetch_related(
                Prefetch("series", ScanSeries.objects.only(*TREE_SERIES_FIELDS))
            ),
            STUDIES_PER_PAGE,
        ).get_page(studies_page)
        if completed
        else None
    )
    studies = list(study_pages) if study_pages is not None else []
    problems = draft_validate(draft=draft, index=index, mappings=mappings)
    by_row: dict[int, list[Problem]] = {}
    for problem in problems:
        if problem.row is not None:
            by_row.setdefault(problem.row, []).append(problem)
    rows = [
        MappingState(row=n, mapping=m, problems=by_row.get(n, []))
        for n, m in enumerate(mappings, start=1)
    ]
    by_target = {
        (r.mapping.study_instance_uid, r.mapping.series_instance_uid): r for r in rows
    }
    both_levels: dict[str, list[str]] = {}
    for study, series in by_target:
        if series and (study, "") in by_target:
            both_levels.setdefault(study, []).append(series)
    json_files = (
        [
            (
                path,
                "json_valid" if f.valid else "json_invalid",
                f.errors[0] if f.errors else "",
            )
            for path, f in sorted(index.json_files.items())
        ]
        if index is not None
        else []
    )
    tree = [
        TreeStudy(
            study=study,
            target=f"{study.study_instance_uid}|",
            mapped=by_target.get((study.study_instance_uid, "")),
            series=[
                TreeSeries(
                    series=series,
                    target=f"{study.study_instance_uid}|{series.series_instance_uid}",
                    mapped=by_target.get(
                        (study.study_instance_uid, series.series_instance_uid)
                    ),
                )
                for series in study.series.all()
            ],
        )
        for study in studies
    ]
    row_pages = Paginator(rows, ROWS_PER_PAGE).get_page(rows_page)
    shown_rows = [
        rows[p.row - 1]
        for p in problems[:PROBLEMS_SHOWN]
        if p.row is not None and p.row <= len(rows)
    ]
    return Composer(
        draft=draft,
        studies=tree,
        studies_page=study_pages,
        rows=list(row_pages),
        rows_page=row_pages,
        row_count=len(rows),
        by_target=by_target,
        problems=problems,
        suggestions=draft_suggestions(draft=draft) if completed else [],
        json_files=json_files,
        both_levels=both_levels,
        row_contexts=study_contexts(
            scan=scan if completed else None,
            rows={r.row: r.mapping for r in shown_rows},
        ),
    )


def draft_problems_with_studies(
    *, draft: ImportDraft, problems: list[Problem]
) -> list[tuple[Problem, StudyContext | None]]:
    """The problems, each with the study its row maps (the confirmation page lists them all)."""
    scan = draft.scan
    mappings = list(
        draft.mappings.all()
    )  # draft_validate's order: row n is mappings[n - 1]
    rows = {
        p.row: mappings[p.row - 1]
        for p in problems
        if p.row is not None and p.row <= len(mappings)
    }
    completed = scan is not None and scan.status == Scan.Status.COMPLETED
    contexts = study_contexts(scan=scan if completed else None, rows=rows)
    return [(p, contexts.get(p.row) if p.row else None) for p in problems]


def study_contexts(
    *, scan: Scan | None, rows: dict[int, DraftMapping]
) -> dict[int, StudyContext]:
    """Each row's study as the scan saw it, in two queries for however many rows (a problem quotes UIDs only)."""
    if scan is None or not rows:
        return {}
    uids = {mapping.study_instance_uid for mapping in rows.values()}
    studies = {
        study.study_instance_uid: study
        for study in ScanStudy.objects.filter(scan=scan, study_instance_uid__in=uids)
        .only("study_instance_uid", "study_description", "study_date")
        .prefetch_related(
            Prefetch(
                "series",
                ScanSeries.objects.only("study_id", "series_instance_uid", "modality"),
            )
        )
    }
    contexts: dict[int, StudyContext] = {}
    for row, mapping in rows.items():
        study = studies.get(mapping.study_instance_uid)
        if study is None:
            continue
        series = [
            s
            for s in study.series.all()
            if not mapping.series_instance_uid
            or s.series_instance_uid == mapping.series_instance_uid
        ]
        contexts[row] = StudyContext(
            date=study.study_date,
            description=study.study_description,
            modalities=tuple(sorted({s.modality for s in series if s.modality})),
        )
    return contexts
