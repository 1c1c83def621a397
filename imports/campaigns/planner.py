"""Cutting an archive into import jobs that HealthImaging will take: pure, over the scan index only.

No Django, no boto3: the plan is a function of the indexed objects, the mappings and the limits, so the property
tests (tests/campaigns/test_planner_properties.py) and the benchmark run it alone.

A StartDICOMImportJob takes a whole prefix (reference §1), so each job's input is a prefix whose whole content
belongs to that job. The planner walks each source's folder tree from the top and makes a job of the highest
folder that fits the limits. A folder that does not fit is split: its subfolders are planned the same way, and its
own files (those directly in it, which no narrower prefix can take) are **staged**: copied server-side into
`<staging>/<campaign>/<job>/`, studies kept together in first-fit bins. Non-DICOM files directly in a split
folder are not copied (HealthImaging would only fail them); they are skipped with the dashboard's reason.

metadataFilePath is relative to the job's input, so every job that maps a file must hold it under its prefix.
A folder job whose mapped file lies outside its folder is staged whole (the dashboard never writes into a source
prefix), with a copy of the file; a file mapped by several staged jobs is copied into each. The copies count
against each job's limits, since HealthImaging counts every object under the input.

Conservative choices (reference §1, quotas): every object under a job's input counts against its file and byte
limits, DICOM or not; "nested folders" counts every distinct folder below the input; a job takes at most 1,000
mappings. CopyObject copies at most 5 GiB in one request (UploadPartCopy is not implemented), so a larger object
that must be staged is a problem of the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imports.mappings.rules import MAX_MAPPINGS

GB = 1000**3
# HealthImaging's quotas per import job (reference §1): 5,000 files (adjustable), 10 GB, 10,000 nested folders.
DEFAULT_MAX_FILES = 5000
DEFAULT_MAX_BYTES = 10 * GB
DEFAULT_MAX_FOLDERS = 10_000
# S3's limit for one CopyObject request (larger objects need a multipart UploadPartCopy).
COPY_OBJECT_MAX_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class Source:
    """A source prefix of the campaign: `prefix` is "" or ends with "/"."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class IndexEntry:
    """One object of a source, as its scan indexed it."""

    source: Source
    key: str
    size: int
    etag: str = ""
    study_uid: str = ""
    series_uid: str = ""
    is_dicom: bool = True

    @property
    def folder(self) -> str:
        """The folder the object is directly in (a key prefix ending with "/", or "")."""
        cut = self.key.rfind("/")
        return self.key[: cut + 1]


@dataclass(frozen=True)
class PlanMapping:
    """A study (or one of its series) and the metadata file, by its place in S3, that amends it."""

    study_uid: str
    series_uid: str  # "" = study level
    bucket: str
    key: str


@dataclass(frozen=True)
class Limits:
    max_files: int = DEFAULT_MAX_FILES
    max_bytes: int = DEFAULT_MAX_BYTES
    max_folders: int = DEFAULT_MAX_FOLDERS
    max_mappings: int = MAX_MAPPINGS


@dataclass(frozen=True)
class Copy:
    """One CopyObject of staging: the source object's version, and where it goes."""

    bucket: str
    key: str
    etag: str
    size: int
    dest_bucket: str
    dest_key: str


@dataclass(frozen=True)
class JobMapping:
    study_uid: str
    series_uid: str
    metadata_file_path: str  # relative to the job's input, as sent


@dataclass
class PlannedJob:
    number: int
    input_uri: str
    staged: bool
    objects: list[IndexEntry] = field(
        default_factory=list
    )  # the campaign's objects this job owns
    copies: list[Copy] = field(default_factory=list)  # empty unless staged
    mappings: list[JobMapping] = field(default_factory=list)
    files: int = 0  # objects under the input, copies of metadata files included
    bytes: int = 0
    folders: int = 0


@dataclass(frozen=True)
class Skipped:
    entry: IndexEntry
    reason: str


@dataclass
class Plan:
    jobs: list[PlannedJob]
    skipped: list[Skipped]
    problems: list[str]

    @property
    def copies(self) -> list[Copy]:
        return [copy for job in self.jobs for copy in job.copies]

    @property
    def staged_objects(self) -> int:
        return len(self.copies)

    @property
    def staged_bytes(self) -> int:
        return sum(copy.size for copy in self.copies)

    def storage_gb_days(self, days: float) -> float:
        """What the staged copies cost in storage until they are cleaned up, in GB-days."""
        return self.staged_bytes / GB * days


@dataclass
class _Folder:
    prefix: str
    direct: list[IndexEntry] = field(default_factory=list)
    children: dict[str, _Folder] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    folders: int = 0
    needs: frozenset[int] = (
        frozenset()
    )  # indexes of the mappings this subtree's DICOM files match


class _Planner:
    def __init__(
        self,
        *,
        mappings: Sequence[PlanMapping],
        limits: Limits,
        staging: Source | None,
        campaign: str,
    ) -> None:
        self.mappings = list(mappings)
        self.limits = limits
        self.staging = staging
        self.campaign = campaign
        self.jobs: list[PlannedJob] = []
        self.skipped: list[Skipped] = []
        self.problems: list[str] = []
        self.by_study: dict[str, list[int]] = {}
        self.by_series: dict[tuple[str, str], list[int]] = {}
        for index, mapping in enumerate(self.mappings):
            if mapping.series_uid:
                self.by_series.setdefault(
                    (mapping.study_uid, mapping.series_uid), []
                ).append(index)
            else:
                self.by_study.setdefault(mapping.study_uid, []).append(index)
        self.metadata: dict[tuple[str, str], IndexEntry] = {}
        self.mapped = {(m.bucket, m.key) for m in self.mappings}

    def skip_reason(self, entry: IndexEntry) -> str:
        """The dashboard's reason for not importing a file (the accounting shows it)."""
        if (entry.source.bucket, entry.key) in self.mapped:
            return "a metadata file"
        return "not DICOM"

    # --- The tree ---

    def needs_of(self, entry: IndexEntry) -> list[int]:
        if not entry.is_dicom:
            return []
        return self.by_study.get(entry.study_uid, []) + self.by_series.get(
            (entry.study_uid, entry.series_uid), []
        )

    def tree(self, source: Source, entries: Iterable[IndexEntry]) -> _Folder:
        root = _Folder(prefix=source.prefix)
        for entry in entries:
            node = root
            rest = entry.key[len(source.prefix) :].split("/")[:-1]
            path = source.prefix
            for part in rest:
                path += part + "/"
                child = node.children.get(path)
                if child is None:
                    child = node.children[path] = _Folder(prefix=path)
                node = child
            node.direct.append(entry)
        self._measure(root)
        return root

    def _measure(self, node: _Folder) -> None:
        # Iterative post-order: archives nest deeper than Python's recursion limit allows for in general.
        order: list[_Folder] = []
        stack = [node]
        while stack:
            current = stack.pop()
            order.append(current)
            stack.extend(current.children.values())
        for current in reversed(order):
            needs: set[int] = set()
            current.files = len(current.direct)
            current.bytes = sum(e.size for e in current.direct)
            current.folders = 0
            for entry in current.direct:
                needs.update(self.needs_of(entry))
            for child in current.children.values():
                current.files += child.files
                current.bytes += child.bytes
                current.folders += 1 + child.folders
                needs |= child.needs
            current.needs = frozenset(needs)

    # --- Fitting ---

    def outside(self, needs: Iterable[int], bucket: str, prefix: str) -> list[int]:
        """The mappings whose file is not under s3://bucket/prefix."""
        return [
            index
            for index in needs
            if self.mappings[index].bucket != bucket
            or not self.mappings[index].key.startswith(prefix)
        ]

    def metadata_size(self, index: int) -> int:
        mapping = self.mappings[index]
        entry = self.metadata.get((mapping.bucket, mapping.key))
        return entry.size if entry else 0

    def fits(self, files: int, size: int, folders: int, mappings: int) -> bool:
        limits = self.limits
        return (
            files <= limits.max_files
            and size <= limits.max_bytes
            and folders <= limits.max_folders
            and mappings <= limits.max_mappings
        )

    # --- Planning ---

    def plan_source(self, source: Source, entries: list[IndexEntry]) -> None:
        root = self.tree(source, entries)
        stack = [root]
        while stack:
            node = stack.pop()
            extra = self.outside(node.needs, source.bucket, node.prefix)
            if node.files and not extra:
                fits = self.fits(node.files, node.bytes, node.folders, len(node.needs))
            elif node.files:
                # Staged whole: what lies under the job's input is then the copies, in their own folders.
                fits = self.bin_fits(
                    [e for e in self._subtree(node) if e.is_dicom], set(node.needs)
                )
            else:
                fits = False
            if fits:
                self.folder_job(source, node, extra)
                continue
            # Planned in key order: the children are pushed last-first.
            stack.extend(
                sorted(node.children.values(), key=lambda n: n.prefix, reverse=True)
            )
            if node.direct:
                self.stage_direct(source, node)

    def _subtree(self, node: _Folder) -> list[IndexEntry]:
        found: list[IndexEntry] = []
        stack = [node]
        while stack:
            current = stack.pop()
            found.extend(current.direct)
            stack.extend(current.children.values())
        return sorted(found, key=lambda e: e.key)

    def folder_job(self, source: Source, node: _Folder, extra: list[int]) -> None:
        objects = self._subtree(node)
        if not any(entry.is_dicom for entry in objects):
            # Nothing HealthImaging would import (a folder of metadata files): no job, every file skipped.
            self.skipped.extend(Skipped(e, self.skip_reason(e)) for e in objects)
            return
        if not extra:
            job = PlannedJob(
                number=len(self.jobs) + 1,
                input_uri=f"s3://{source.bucket}/{node.prefix}",
                staged=False,
                objects=objects,
                files=node.files,
                bytes=node.bytes,
                folders=node.folders,
            )
            job.mappings = [
                self.job_mapping(i, source.bucket, node.prefix)
                for i in sorted(node.needs)
            ]
            self.jobs.append(job)
            return
        # A mapped file lies outside the folder: the folder is staged whole, with a copy of the file.
        self.staged_job(objects, needs=set(node.needs))

    def job_mapping(self, index: int, bucket: str, prefix: str) -> JobMapping:
        mapping = self.mappings[index]
        return JobMapping(
            study_uid=mapping.study_uid,
            series_uid=mapping.series_uid,
            metadata_file_path=mapping.key[len(prefix) :],
        )

    def stage_direct(self, source: Source, node: _Folder) -> None:
        """The files directly in a folder too large for one job: DICOM files into first-fit bins by study."""
        units: dict[str, list[IndexEntry]] = {}
        for entry in sorted(node.direct, key=lambda e: e.key):
            if not entry.is_dicom:
                self.skipped.append(Skipped(entry, self.skip_reason(entry)))
                continue
            units.setdefault(entry.study_uid, []).append(entry)
        bins: list[_Bin] = []
        for study in sorted(units):
            for unit in self.split_to_fit(units[study]):
                for open_bin in bins:
                    if open_bin.takes(unit):
                        open_bin.add(unit)
                        break
                else:
                    fresh = _Bin(self)
                    if not fresh.takes(unit):
                        self.problems.append(
                            f"s3://{source.bucket}/{unit.entries[0].key}: no job within the limits can take it "
                            "with the metadata files it maps (files, bytes, nested folders or mappings)."
                        )
                    fresh.add(unit)
                    bins.append(fresh)
        for done in bins:
            self.staged_job(done.entries, needs=done.needs)

    def unit(self, entries: list[IndexEntry]) -> _Bin:
        made = _Bin(self)
        for entry in entries:
            made.add_entry(entry)
        return made

    def split_to_fit(self, study: list[IndexEntry]) -> list[_Bin]:
        """A study as one unit if it fits a job, else its series, and a series too large in key-order chunks."""
        whole = self.unit(study)
        if whole.fits():
            return [whole]
        units: list[_Bin] = []
        by_series: dict[str, list[IndexEntry]] = {}
        for entry in study:
            by_series.setdefault(entry.series_uid, []).append(entry)
        for series in sorted(by_series):
            chunk = _Bin(self)
            for entry in by_series[series]:
                if chunk.entries and not chunk.takes_entry(entry):
                    units.append(chunk)
                    chunk = _Bin(self)
                chunk.add_entry(entry)
            if chunk.entries:
                units.append(chunk)
        return units

    def bin_fits(self, objects: list[IndexEntry], needs: set[int]) -> bool:
        made = self.unit(objects)
        made.needs |= needs
        return made.fits()

    def staged_job(self, objects: list[IndexEntry], *, needs: set[int]) -> None:
        number = len(self.jobs) + 1
        staging = self.staging or Source("staging", "")
        base = f"{staging.prefix}{self.campaign}/{number}/"
        job = PlannedJob(
            number=number, input_uri=f"s3://{staging.bucket}/{base}", staged=True
        )
        job.objects = list(objects)
        copied: set[tuple[str, str]] = set()
        for entry in objects:
            # Only what HealthImaging is to import, and the mapped files below; other files are skipped.
            if entry.is_dicom:
                self.add_copy(job, entry, staging.bucket, base, copied)
        for index in sorted(needs):
            mapping = self.mappings[index]
            metadata = self.metadata.get((mapping.bucket, mapping.key))
            if metadata is None:
                continue  # the mapping's problem, named by plan()
            self.add_copy(job, metadata, staging.bucket, base, copied)
            job.mappings.append(
                JobMapping(mapping.study_uid, mapping.series_uid, mapping.key)
            )
        job.files = len(job.copies)
        job.bytes = sum(c.size for c in job.copies)
        job.folders = nested_folders(c.dest_key[len(base) :] for c in job.copies)
        self.jobs.append(job)

    def add_copy(
        self,
        job: PlannedJob,
        entry: IndexEntry,
        bucket: str,
        base: str,
        copied: set[tuple[str, str]],
    ) -> None:
        if (entry.source.bucket, entry.key) in copied:
            return
        copied.add((entry.source.bucket, entry.key))
        if entry.size > COPY_OBJECT_MAX_BYTES:
            self.problems.append(
                f"s3://{entry.source.bucket}/{entry.key} is {entry.size:,} bytes and must be staged; one "
                f"CopyObject copies at most {COPY_OBJECT_MAX_BYTES:,} bytes (multipart copy is not supported)."
            )
        # The source key kept whole under the job's folder: the copy says where it came from, and a
        # metadataFilePath is the mapped file's own key.
        job.copies.append(
            Copy(
                bucket=entry.source.bucket,
                key=entry.key,
                etag=entry.etag,
                size=entry.size,
                dest_bucket=bucket,
                dest_key=base + entry.key,
            )
        )


class _Bin:
    """A staged job being filled: running totals, so that each "does it take this too?" costs the addition only.

    What lands under the job's input: a copy of each DICOM file and of each mapped file not among them, at
    `<job>/<source key>`, so every folder level of those keys counts as a nested folder.
    """

    def __init__(self, planner: _Planner) -> None:
        self.planner = planner
        self.entries: list[IndexEntry] = []
        self.own: set[tuple[str, str]] = set()
        self.bytes = 0
        self.folders: set[str] = set()
        self.needs: set[int] = set()

    def _extra(
        self, needs: set[int], owns: tuple[set[tuple[str, str]], ...]
    ) -> list[int]:
        mappings = self.planner.mappings
        return [
            i
            for i in needs
            if not any((mappings[i].bucket, mappings[i].key) in own for own in owns)
        ]

    def _measure(
        self,
        files: int,
        size: int,
        folders: set[str],
        needs: set[int],
        owns: tuple[set[tuple[str, str]], ...],
    ) -> bool:
        planner = self.planner
        extra = self._extra(needs, owns)
        meta_folders = set(folders)
        for index in extra:
            meta_folders.update(_ancestors(planner.mappings[index].key))
        return planner.fits(
            files + len(extra),
            size + sum(planner.metadata_size(i) for i in extra),
            len(meta_folders),
            len(needs),
        )

    def fits(self) -> bool:
        return self._measure(
            len(self.entries), self.bytes, self.folders, self.needs, (self.own,)
        )

    def takes(self, unit: _Bin) -> bool:
        return self._measure(
            len(self.entries) + len(unit.entries),
            self.bytes + unit.bytes,
            self.folders | unit.folders,
            self.needs | unit.needs,
            (self.own, unit.own),
        )

    def takes_entry(self, entry: IndexEntry) -> bool:
        return self._measure(
            len(self.entries) + 1,
            self.bytes + entry.size,
            self.folders | set(_ancestors(entry.key)),
            self.needs | set(self.planner.needs_of(entry)),
            (self.own, {(entry.source.bucket, entry.key)}),
        )

    def add_entry(self, entry: IndexEntry) -> None:
        self.entries.append(entry)
        self.own.add((entry.source.bucket, entry.key))
        self.bytes += entry.size
        self.folders.update(_ancestors(entry.key))
        self.needs.update(self.planner.needs_of(entry))

    def add(self, unit: _Bin) -> None:
        self.entries.extend(unit.entries)
        self.own |= unit.own
        self.bytes += unit.bytes
        self.folders |= unit.folders
        self.needs |= unit.needs


def _ancestors(key: str) -> list[str]:
    parts = key.split("/")[:-1]
    return ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def nested_folders(keys: Iterable[str]) -> int:
    """Distinct folders below a prefix that holds `keys` (relative to it), every level counted."""
    folders: set[str] = set()
    for key in keys:
        parts = key.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folders.add("/".join(parts[:depth]))
    return len(folders)


def plan(
    *,
    sources: Sequence[Source],
    entries: Iterable[IndexEntry],
    mappings: Sequence[PlanMapping] = (),
    limits: Limits = Limits(),
    staging: Source | None = None,
    campaign: str = "campaign",
) -> Plan:
    """Cut the sources' objects into jobs within `limits`; `plan.problems` says why it cannot run, if it cannot."""
    planner = _Planner(
        mappings=mappings, limits=limits, staging=staging, campaign=campaign
    )
    by_source: dict[Source, list[IndexEntry]] = {source: [] for source in sources}
    for entry in entries:
        by_source.setdefault(entry.source, []).append(entry)
        if not entry.is_dicom:
            planner.metadata[(entry.source.bucket, entry.key)] = entry
    for index, mapping in enumerate(mappings, start=1):
        if (mapping.bucket, mapping.key) not in planner.metadata:
            planner.problems.append(
                f"Mapping {index}: s3://{mapping.bucket}/{mapping.key} is not a file the scans of the inputs found."
            )
    for entry in (e for group in by_source.values() for e in group):
        if entry.size > limits.max_bytes:
            planner.problems.append(
                f"s3://{entry.source.bucket}/{entry.key} is {entry.size:,} bytes, more than a job takes "
                f"({limits.max_bytes:,} bytes): no plan can import it."
            )
    for source in sources:
        planner.plan_source(source, by_source[source])
    staged = [job for job in planner.jobs if job.staged]
    if staged and staging is None:
        planner.problems.append(
            f"--staging: {len(staged):,} of the {len(planner.jobs):,} jobs must be staged (folders that hold "
            "more files than one job takes, or jobs that map a metadata file outside their folder); give "
            "--staging s3://bucket/prefix/ for the copies."
        )
    return Plan(jobs=planner.jobs, skipped=planner.skipped, problems=planner.problems)
