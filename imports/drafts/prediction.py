"""What an import will do to each series, before it runs: a new image set, added to the primary one, or a fork.

HealthImaging puts a series into the primary image set of that series when one exists and their normalized
patient, study and series attributes agree (re-imported instances are overwritten, the version goes up), and into
a new **non-primary** image set when they conflict (reference §2, "Organisation / primary vs non-primary"). So for
every series of the scan, this module merges the attributes it will be imported with (the scan's indexed values ⊕
study file ⊕ series file, as the preview merges them: `preview.merge_header`), finds the primary image sets of its
study with one paginated SearchImageSets (study UID and isPrimary), reads the metadata of the one holding the
series (GetImageSetMetadata), and compares (`attributes_differ`, pure).

What AWS does not document, and the conservative choice made here (UNVERIFIED, all of it):
- **Which attributes conflict.** AWS lists "Study Date, Accession Number, Patient ID, StudyInstanceUID, Study ID,
  SeriesInstanceUID, Series Number, …". COMPARED holds those, the patient's name, birth date and sex, the study
  description and the modality: more attributes than AWS may use, so a prediction may warn of a fork that does not
  happen, never the other way round.
- **Normalization.** Trailing spaces (and NUL padding) are ignored; person names compare component by component,
  trailing empty components and groups ignored; case is kept (a case change counts as a difference). An absent
  attribute equals an empty one. When the stored name is one group (GetImageSetMetadata shows the alphabetic
  group only), only the alphabetic groups are compared.
- **Study-level conflicts across series.** A series with no primary image set is predicted `new`, even when another
  series of its study is stored with other patient or study values: AWS documents the conflict against "an existing
  primary set" of the series (and localaws behaves so). The page shows such series as new.
- **Values the scan does not index** (PatientBirthDate, PatientSex, StudyID) come from the header a preview read
  earlier (cached; no request is made for them) or from a mapping file; otherwise they are not compared.
  A study whose instances disagree on an indexed value takes the value of the series' own sample instance.
- **Where a value lives in the metadata.** The document is searched at the series, then the study, then the
  patient level, by keyword.

AWS calls are budgeted: one SearchImageSets per study (every page) and one GetImageSetMetadata per primary image
set that holds a series of the scan, each call tried `imports.aws.image_sets.ATTEMPTS` times, studies looked up
PREDICTION_CONCURRENCY (4) at a time. The throttling table the reference quotes gives no rate for
SearchImageSets or GetImageSetMetadata (UNVERIFIED): four lookups in flight make some 40 to 80 calls a second at
AWS's usual latency, a throttled call is retried by botocore, and past that the prediction stops and says why.
The answer of a study is cached for PREDICTION_CACHE_SECONDS under the draft's content hash. When AWS cannot answer (throttled
past the budget, access denied, metadata not consistent yet), the rest of the prediction stops and every series
not predicted has outcome None and a plain reason: a prediction never blocks anything.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache

from imports.aws import client as aws
from imports.aws import image_sets
from imports.drafts.prediction_rules import (
    COMPARED,
    KEYWORD_OF_TAG,
    attributes_differ,
    normalize,
    series_in_document,
    stored_attributes,
)
from imports.drafts.preview import (
    cached_original_attributes,
    file_attributes,
    merge_header,
)
from imports.drafts.services import draft_mappings
from imports.mappings.rules import Mapping as DraftMappingRow
from imports.models import Datastore, ImportDraft, Scan, ScanSeries, ScanStudy

Outcome = Literal["new", "adds_to", "non_primary"]
# ScanStudy / ScanSeries / ObjectHeader columns of the indexed keywords.
STUDY_COLUMNS = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
}
SERIES_COLUMNS = {"Modality": "modality", "SeriesNumber": "series_number"}
PREDICTION_CACHE_SECONDS = 10 * 60


# ---- the prediction --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    keyword: str
    imported: str
    stored: str

    @property
    def is_patient(self) -> bool:
        return COMPARED[self.keyword][0] >> 16 == 0x0010


@dataclass(frozen=True)
class SeriesPrediction:
    study_instance_uid: str
    series_instance_uid: str
    outcome: Outcome | None
    image_set_id: str | None = None
    image_set_version: int | None = None
    differences: tuple[Difference, ...] = ()
    reason: str = ""
    # For a page: the study's description and the series number, never a patient value.
    series_number: int | None = None

    @property
    def differs(self) -> list[str]:
        return [d.keyword for d in self.differences]

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "kind": "prediction",
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "outcome": self.outcome,
            "image_set_id": self.image_set_id,
            "image_set_version": self.image_set_version,
            "differs": self.differs,
        }
        if self.outcome is None:
            line["reason"] = self.reason
        return line


@dataclass
class Prediction:
    series: list[SeriesPrediction] = field(default_factory=list)

    def count(self, outcome: Outcome | None) -> int:
        return sum(1 for s in self.series if s.outcome == outcome)

    @property
    def new(self) -> int:
        return self.count("new")

    @property
    def adds_to(self) -> int:
        return self.count("adds_to")

    @property
    def non_primary(self) -> int:
        return self.count("non_primary")

    @property
    def non_primary_series(self) -> list[SeriesPrediction]:
        return [s for s in self.series if s.outcome == "non_primary"]

    @property
    def unpredicted(self) -> int:
        return self.count(None)

    @property
    def reason(self) -> str:
        """Why some series could not be predicted (the first reason), or ""."""
        return next((s.reason for s in self.series if s.outcome is None), "")


def prediction_for_job(
    result: Prediction, *, accepted_non_primary: bool | None = None
) -> dict[str, Any]:
    """The prediction as an import job stores it (ImportJob.prediction): counts, the first reason, and one
    entry a series, so imports.jobs.verification can compare it with what happened."""
    return {
        "new": result.new,
        "adds_to": result.adds_to,
        "non_primary": result.non_primary,
        "not_predicted": result.unpredicted,
        "reason": result.reason,
        "accepted_non_primary": accepted_non_primary,
        "series": [
            {
                "study_instance_uid": s.study_instance_uid,
                "series_instance_uid": s.series_instance_uid,
                "outcome": s.outcome,
                "image_set_id": s.image_set_id,
                "image_set_version": s.image_set_version,
                "differs": s.differs,
            }
            for s in result.series
        ],
    }


def draft_predict(
    *, draft: ImportDraft, on_progress: Callable[[int, int], None] | None = None
) -> Prediction:
    """The prediction of a draft, against its scan and datastore; cached under its content hash."""
    if draft.scan is None:
        return Prediction()
    return series_predict(
        scan=draft.scan,
        datastore=draft.datastore,
        mappings=draft_mappings(draft=draft),
        cache_scope=f"draft-{draft.pk}-{draft.content_hash}",
        on_progress=on_progress,
    )


def series_predict(
    *,
    scan: Scan,
    datastore: Datastore,
    mappings: Iterable[DraftMappingRow],
    cache_scope: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Predict every series of the scan; `cache_scope` (a content hash) caches each study's answer, and
    `on_progress(done, total)` hears of the studies looked up as they are."""
    by_target = {
        (m.study_instance_uid, m.series_instance_uid): m.metadata_file_path
        for m in mappings
    }
    files: dict[str, dict[int, tuple[str, str | None]]] = {}

    def layer(path: str | None) -> dict[int, tuple[str, str | None]]:
        if not path:
            return {}
        if path not in files:
            files[path] = file_attributes(scan=scan, path=path)
        return files[path]

    prediction = Prediction()
    failure = ""
    studies = list(ScanStudy.objects.filter(scan=scan).order_by("study_instance_uid"))
    # One joined query for every series and its sample header: a prefetch would send their IDs back in one
    # IN list, which SQLite refuses past about a thousand ("Expression tree is too large").
    series_of: dict[int, list[ScanSeries]] = {study.pk: [] for study in studies}
    for one in (
        ScanSeries.objects.filter(study__scan=scan)
        .select_related("sample_header")
        .order_by("series_instance_uid")
    ):
        series_of[one.study_id].append(one)
    lookups = _studies_image_sets(
        datastore=datastore,
        wanted={
            study.study_instance_uid: {
                s.series_instance_uid for s in series_of[study.pk]
            }
            for study in studies
        },
        cache_scope=cache_scope,
        on_progress=on_progress,
    )
    for study in studies:
        series_list = series_of[study.pk]
        if not failure:
            answer = lookups.get(study.study_instance_uid)
            if isinstance(answer, aws.AwsError):
                failure = _reason(answer)
            else:
                known = answer or {}
        for series in series_list:
            if failure:
                prediction.series.append(
                    SeriesPrediction(
                        study.study_instance_uid,
                        series.series_instance_uid,
                        None,
                        reason=failure,
                        series_number=series.series_number,
                    )
                )
                continue
            imported = imported_attributes(
                study=study,
                series=series,
                layers=[
                    (
                        "study file",
                        layer(by_target.get((study.study_instance_uid, ""))),
                    ),
                    (
                        "series file",
                        layer(
                            by_target.get(
                                (study.study_instance_uid, series.series_instance_uid)
                            )
                        ),
                    ),
                ],
            )
            prediction.series.append(
                _outcome(study, series, imported, known.get(series.series_instance_uid))
            )
    return prediction


def imported_attributes(
    *,
    study: ScanStudy,
    series: ScanSeries,
    layers: list[tuple[str, dict[int, tuple[str, str | None]]]],
) -> dict[str, str | None]:
    """The COMPARED values the series will be imported with; keywords nobody knows are left out."""
    header = series.sample_header
    original: dict[int, tuple[str, str]] = {}
    for keyword, column in STUDY_COLUMNS.items():
        # Instances that disagree: this series' own sample is the better guess than the study's most common value.
        source: Any = header if keyword in study.variants and header else study
        original[COMPARED[keyword][0]] = (
            COMPARED[keyword][1],
            _text(getattr(source, column)),
        )
    for keyword, column in SERIES_COLUMNS.items():
        source = header if keyword in series.variants and header else series
        original[COMPARED[keyword][0]] = (
            COMPARED[keyword][1],
            _text(getattr(source, column)),
        )
    if header is not None:
        read = cached_original_attributes(header)
        if read:
            original.update({t: v for t, v in read.items() if t in KEYWORD_OF_TAG})
    rows = merge_header(original, layers)
    return {
        KEYWORD_OF_TAG[row.tag]: row.imported
        for row in rows
        if row.tag in KEYWORD_OF_TAG
    }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class _Stored:
    image_set_id: str
    version: int | None
    attributes: dict[str, Any]


def _outcome(
    study: ScanStudy,
    series: ScanSeries,
    imported: dict[str, str | None],
    stored: _Stored | None,
) -> SeriesPrediction:
    if stored is None:
        return SeriesPrediction(
            study.study_instance_uid,
            series.series_instance_uid,
            "new",
            series_number=series.series_number,
        )
    differing = attributes_differ(imported, stored.attributes)
    differences = tuple(
        Difference(k, imported.get(k) or "", normalize(k, stored.attributes.get(k)))
        for k in differing
    )
    return SeriesPrediction(
        study.study_instance_uid,
        series.series_instance_uid,
        "non_primary" if differing else "adds_to",
        image_set_id=stored.image_set_id,
        image_set_version=stored.version,
        differences=differences,
        series_number=series.series_number,
    )


def _studies_image_sets(
    *,
    datastore: Datastore,
    wanted: dict[str, set[str]],
    cache_scope: str | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, _Stored] | aws.AwsError]:
    """study UID -> its series' primary image sets, or the error that stopped its lookup; a study missing
    from the answer was not looked up because an earlier one (in UID order) failed.

    Studies are looked up PREDICTION_CONCURRENCY at a time: each lookup waits on HealthImaging, not on this
    process. Only the AWS calls run in the pool; the cache (which may be the database) is read and written here.
    """
    answers: dict[str, dict[str, _Stored] | aws.AwsError] = {}
    keys: dict[str, str] = {}
    to_fetch: list[str] = []
    for study_uid in sorted(wanted):
        if cache_scope is None:
            to_fetch.append(study_uid)
            continue
        digest = hashlib.sha256(
            f"{datastore.region}/{datastore.datastore_id}/{cache_scope}/{study_uid}".encode()
        ).hexdigest()
        keys[study_uid] = f"prediction:{digest}"
        cached = cache.get(keys[study_uid])
        if cached is None:
            to_fetch.append(study_uid)
        else:
            answers[study_uid] = {
                uid: _Stored(v["image_set_id"], v["version"], v["attributes"])
                for uid, v in json.loads(cached).items()
            }
    stop = threading.Event()

    def fetch(study_uid: str) -> dict[str, _Stored] | aws.AwsError | None:
        # After one study could not be answered (throttled past the budget, denied) the others are not asked:
        # the prediction says why it stopped, and AWS is not pressed further.
        if stop.is_set():
            return None
        try:
            return _study_image_sets(
                datastore=datastore, study_uid=study_uid, wanted=wanted[study_uid]
            )
        except aws.AwsError as error:
            stop.set()
            return error

    total, cached = len(wanted), len(answers)
    if on_progress is not None:
        on_progress(cached, total)
    workers = max(1, min(settings.PREDICTION_CONCURRENCY, len(to_fetch)))
    fetched: list[dict[str, _Stored] | aws.AwsError | None] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="prediction") as pool:
        # map() keeps UID order; the progress is told here, in this thread, as each answer is taken.
        for answer in pool.map(fetch, to_fetch):
            fetched.append(answer)
            if on_progress is not None:
                on_progress(cached + len(fetched), total)
    for study_uid, answer in zip(to_fetch, fetched, strict=True):
        if answer is None:
            continue
        answers[study_uid] = answer
        if study_uid in keys and not isinstance(answer, aws.AwsError):
            cache.set(
                keys[study_uid],
                json.dumps(
                    {
                        uid: {
                            "image_set_id": s.image_set_id,
                            "version": s.version,
                            "attributes": s.attributes,
                        }
                        for uid, s in answer.items()
                    }
                ),
                timeout=PREDICTION_CACHE_SECONDS,
            )
    return answers


def _study_image_sets(
    *,
    datastore: Datastore,
    study_uid: str,
    wanted: set[str],
) -> dict[str, _Stored]:
    """series UID -> the primary image set holding it, with its stored COMPARED values."""
    summaries = image_sets.search_image_sets(
        region=datastore.region,
        datastore_id=datastore.datastore_id,
        study_uid=study_uid,
    )
    found: dict[str, _Stored] = {}
    for summary in summaries:
        if summary.is_primary is False:
            continue
        # A summary without the series UID is read anyway: its metadata names the series it holds.
        if summary.series_instance_uid and summary.series_instance_uid not in wanted:
            continue
        document = image_sets.get_image_set_metadata(
            region=datastore.region,
            datastore_id=datastore.datastore_id,
            image_set_id=summary.image_set_id,
        )
        for uid in series_in_document(document) or [summary.series_instance_uid]:
            if uid in wanted and uid not in found:
                found[uid] = _Stored(
                    summary.image_set_id,
                    summary.version,
                    stored_attributes(document, uid),
                )
    return found


def _reason(error: aws.AwsError) -> str:
    if isinstance(error, aws.AccessDenied):
        return (
            "HealthImaging refused the dashboard's credentials (they need medical-imaging:SearchImageSets and "
            f"medical-imaging:GetImageSetMetadata): {error}"
        )
    if isinstance(error, image_sets.NotConsistentYet):
        return f"HealthImaging's metadata is not consistent yet after a recent import; try again in a few seconds: {error}"
    if isinstance(error, aws.Throttled):
        return f"HealthImaging is throttling the dashboard; try again later: {error}"
    return f"HealthImaging could not be asked: {error}"


OUTCOME_WORDS: dict[Outcome | None, str] = {
    "new": "new image set",
    "adds_to": "adds to",
    "non_primary": "NON-PRIMARY",
    None: "not predicted",
}
COST_NOTE = (
    "HealthImaging bills every image set for at least 5 MB and every import for at least 30 days, "
    "so an unwanted non-primary image set has a price."
)


def prediction_table(result: Prediction, *, datastore_name: str) -> list[str]:
    """The prediction as lines of text: a summary, one row a series, the reason and what to do."""
    lines = [
        f"Prediction in “{datastore_name}”: {result.new} new, {result.adds_to} added to an image set, "
        f"{result.non_primary} non-primary"
        + (f", {result.unpredicted} not predicted" if result.unpredicted else "")
    ]
    rows = [("study", "series", "outcome", "image set", "differs")]
    for s in result.series:
        image_set = (
            f"{s.image_set_id} v{s.image_set_version}" if s.image_set_id else "–"
        )
        rows.append(
            (
                s.study_instance_uid,
                s.series_instance_uid,
                OUTCOME_WORDS[s.outcome],
                image_set,
                ", ".join(s.differs) or "–",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        lines.append("  " + "  ".join([*cells, row[4]]))
    if result.reason:
        lines.append(f"Not predicted: {result.reason}")
    if result.non_primary:
        lines.append(
            "A series marked NON-PRIMARY would fork a second image set: override the differing attributes "
            "to match the stored values, or accept the fork. " + COST_NOTE
        )
    return lines
