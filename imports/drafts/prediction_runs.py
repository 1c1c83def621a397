"""A draft's prediction where every process can read it, and run on a worker when the draft is large.

A draft of up to PREDICTION_INLINE_STUDIES studies is predicted while the confirmation page renders, as before;
its answer is kept in a DraftPrediction row for the draft's content hash, so the Confirm that follows (which may
reach another web process, whose cache is its own) makes no second round of AWS calls. A larger draft would keep
the page waiting for minutes (about 11 s a thousand series at 20 ms of latency, far more at AWS's): the page
creates the row and sends imports.draft_predict, which looks the studies up and counts them as it goes (the
progress bar), and the page polls the row until its answer is in.

The row is claimed with a conditional UPDATE on its lease, so a duplicate message, or a second page asking at the
same moment, does nothing; a task that died mid-way leaves a lapsed lease, and the next poll of the page sends a
new one. Confirming a large draft while its prediction still runs is refused with the progress, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from imports.drafts.prediction import (
    Difference,
    Prediction,
    SeriesPrediction,
    draft_predict,
)
from imports.enqueue import DRAFT_PREDICT, enqueue_task
from imports.models import DraftPrediction, ImportDraft, ScanStudy

# Long enough for a lookup of a study's image sets between two progress writes (each pushes it on).
LEASE_SECONDS = 120
# How often the task writes its progress, in studies.
PROGRESS_EVERY = 10
# A stored answer with series AWS could not predict is asked for again after this long.
RETRY_SECONDS = 60


@dataclass(frozen=True)
class PredictionState:
    """What the confirmation page shows: the answer, or how far the task has got."""

    prediction: Prediction | None
    studies_done: int = 0
    studies_total: int = 0

    @property
    def running(self) -> bool:
        return self.prediction is None

    @property
    def percent(self) -> int:
        if not self.studies_total:
            return 0
        return min(100, self.studies_done * 100 // self.studies_total)


def prediction_as_json(result: Prediction) -> dict[str, Any]:
    return {
        "series": [
            {
                "study_instance_uid": s.study_instance_uid,
                "series_instance_uid": s.series_instance_uid,
                "outcome": s.outcome,
                "image_set_id": s.image_set_id,
                "image_set_version": s.image_set_version,
                "differences": [
                    [d.keyword, d.imported, d.stored] for d in s.differences
                ],
                "reason": s.reason,
                "series_number": s.series_number,
            }
            for s in result.series
        ]
    }


def prediction_from_json(document: dict[str, Any]) -> Prediction:
    return Prediction(
        series=[
            SeriesPrediction(
                study_instance_uid=s["study_instance_uid"],
                series_instance_uid=s["series_instance_uid"],
                outcome=s["outcome"],
                image_set_id=s["image_set_id"],
                image_set_version=s["image_set_version"],
                differences=tuple(Difference(*d) for d in s["differences"]),
                reason=s["reason"],
                series_number=s["series_number"],
            )
            for s in document.get("series", [])
        ]
    )


def draft_prediction_state(*, draft: ImportDraft) -> PredictionState:
    """The draft's prediction for its current content: the stored answer, one computed now for a small draft,
    or (for a large one) the task's progress, sending the task when none runs."""
    stored = DraftPrediction.objects.filter(
        draft=draft, content_hash=draft.content_hash
    ).first()
    if (
        stored is not None
        and stored.state == DraftPrediction.State.DONE
        and _unpredicted(stored.result)
        and stored.updated_at < timezone.now() - timedelta(seconds=RETRY_SECONDS)
    ):
        # AWS could not answer then (throttled, denied, not consistent yet): ask again, as the page would.
        stored.delete()
        stored = None
    if stored is not None and stored.state == DraftPrediction.State.DONE:
        return PredictionState(
            prediction_from_json(stored.result),
            stored.studies_done,
            stored.studies_total,
        )
    total = ScanStudy.objects.filter(scan=draft.scan).count() if draft.scan else 0
    if stored is None and total <= settings.PREDICTION_INLINE_STUDIES:
        result = draft_predict(draft=draft)
        _store_inline(draft=draft, result=result, total=total)
        return PredictionState(result, total, total)
    if stored is None:
        try:
            with transaction.atomic():
                stored = DraftPrediction.objects.create(
                    draft=draft, content_hash=draft.content_hash, studies_total=total
                )
        except IntegrityError:
            # Another request created it a moment ago; its task is on its way.
            stored = DraftPrediction.objects.get(
                draft=draft, content_hash=draft.content_hash
            )
        else:
            enqueue_task(DRAFT_PREDICT, stored.pk)
    elif stored.lease_until is not None and stored.lease_until < timezone.now():
        # The task that held it died (its lease lapsed): send another, which resumes from the cache.
        enqueue_task(DRAFT_PREDICT, stored.pk)
    return PredictionState(None, stored.studies_done, stored.studies_total or total)


def _unpredicted(document: dict[str, Any]) -> bool:
    return any(s["outcome"] is None for s in document.get("series", []))


def _store_inline(*, draft: ImportDraft, result: Prediction, total: int) -> None:
    if result.unpredicted:
        # AWS could not answer: ask again next time rather than keep "not predicted" for this content.
        return
    DraftPrediction.objects.update_or_create(
        draft=draft,
        content_hash=draft.content_hash,
        defaults={
            "state": DraftPrediction.State.DONE,
            "studies_total": total,
            "studies_done": total,
            "result": prediction_as_json(result),
        },
    )


def draft_prediction_run(*, prediction_id: int) -> None:
    """The task's body: claim the row, predict with progress, store the answer. A duplicate does nothing."""
    now = timezone.now()
    claimed = (
        DraftPrediction.objects.filter(
            pk=prediction_id, state=DraftPrediction.State.RUNNING
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=LEASE_SECONDS))
    )
    if not claimed:
        return
    row = DraftPrediction.objects.select_related("draft__scan", "draft__datastore").get(
        pk=prediction_id
    )
    draft = row.draft
    if draft.content_hash != row.content_hash:
        # The draft changed since the page asked: that content is no one's any more.
        row.delete()
        return

    def progress(done: int, total: int) -> None:
        if done == total or done % PROGRESS_EVERY == 0:
            DraftPrediction.objects.filter(pk=row.pk).update(
                studies_done=done,
                studies_total=total,
                lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS),
            )

    result = draft_predict(draft=draft, on_progress=progress)
    DraftPrediction.objects.filter(pk=row.pk).update(
        state=DraftPrediction.State.DONE,
        result=prediction_as_json(result),
        lease_until=None,
    )
