"""Import drafts: an import being composed, and its mappings."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from imports import validators
from imports.dicom.uids import SERVICE_UID_MAX_LENGTH
from imports.models.datastores import Datastore
from imports.models.scans import Scan


class ImportDraft(models.Model):
    """An import being composed: where from, where to, and which metadata file goes with which study or series.

    Saved on every change. `version` goes up by one with each save, so a save made from an older version (a
    second tab) can be refused instead of silently overwriting the newer state.
    """

    datastore = models.ForeignKey(
        Datastore, on_delete=models.PROTECT, related_name="drafts"
    )
    input_s3_uri = models.CharField(
        "input S3 URI",
        max_length=validators.S3_URI_MAX_LENGTH,
        validators=[validators.validate_s3_uri],
    )
    output_s3_uri = models.CharField(
        "output S3 URI",
        max_length=validators.S3_URI_MAX_LENGTH,
        validators=[validators.validate_output_s3_uri],
    )
    job_name = models.CharField(
        max_length=64, blank=True, validators=[validators.validate_job_name]
    )
    # The index the mappings were composed against: the latest completed scan of the input prefix.
    scan = models.ForeignKey(
        Scan, null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="import_drafts",
    )
    # "Retry failed files" and "Clone as new draft" remember the job the draft came from.
    source_job = models.ForeignKey(
        "ImportJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="derived_drafts",
    )
    version = models.PositiveIntegerField(default=1)
    # Who made the last change (null: the owner, or the system): an approver must be someone else.
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # sha256 over the mappings and the ETags of the files they name (drafts.draft_content_hash).
    content_hash = models.CharField(max_length=64, blank=True)
    # Set once, by the confirmation that made this draft's job: from then on the draft is frozen (every
    # change is refused) and a second confirmation, from any tab, answers with that job.
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last validation's verdict, for the Drafts list.
    error_count = models.PositiveIntegerField(default=0)
    warning_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.job_name or f"Draft {self.pk}"


class DraftMapping(models.Model):
    """One entry of dicomMetadataMappings: a study (or one of its series) and the file that amends it."""

    draft = models.ForeignKey(
        ImportDraft, on_delete=models.CASCADE, related_name="mappings"
    )
    # As long as StartDICOMImportJob takes (the validator refuses longer UIDs before they are stored).
    study_instance_uid = models.CharField(max_length=SERVICE_UID_MAX_LENGTH)
    # Empty for a study-level mapping.
    series_instance_uid = models.CharField(
        max_length=SERVICE_UID_MAX_LENGTH, blank=True
    )
    # Relative to the draft's input URI, exactly as sent to HealthImaging.
    metadata_file_path = models.CharField(max_length=1024)
    # The version of the file the user mapped; a different ETag at validation means the file changed.
    metadata_etag = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "study_instance_uid", "series_instance_uid"],
                name="one_mapping_per_study_or_series",
            )
        ]

    def __str__(self) -> str:
        return self.metadata_file_path


class DraftPrediction(models.Model):
    """A draft's prediction, computed once for one content of the draft, where every process can read it.

    A draft with more studies than PREDICTION_INLINE_STUDIES is predicted by the task imports.draft_predict, which
    counts the studies it has looked up (the page's progress bar) and stores the answer here; a change to the
    draft changes its content hash, and so asks for a new row. The answer holds patient values (the differing
    attributes), as the scan's index does: pages mask them as they mask the index.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    draft = models.ForeignKey(
        ImportDraft, on_delete=models.CASCADE, related_name="predictions"
    )
    content_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    studies_total = models.PositiveIntegerField(default=0)
    studies_done = models.PositiveIntegerField(default=0)
    # imports.drafts.prediction_runs.prediction_as_json; empty while running.
    result = models.JSONField(default=dict, blank=True)
    # A task that died is replaced once this has passed (a running task pushes it on with its progress).
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["draft", "content_hash"], name="one_prediction_per_content"
            )
        ]

    def __str__(self) -> str:
        return f"prediction of draft {self.draft_id}: {self.studies_done} of {self.studies_total} studies"


class DraftApprovalQuerySet(models.QuerySet["DraftApproval"]):
    def of_confirmed_draft(self, draft_id: int | None) -> DraftApproval | None:
        """The approval that held when the draft was confirmed (a confirmed draft changes no more)."""
        if draft_id is None:
            return None
        return (
            self.filter(
                draft_id=draft_id,
                decision=DraftApproval.Decision.APPROVED,
                voided_at__isnull=True,
            )
            .order_by("-created_at", "-id")
            .first()
        )


class DraftApproval(models.Model):
    """A second person's decision on a draft that changes patient data, for one version of it.

    It holds for the version and content hash it names: any later change to the draft bumps the version, so a
    comparison (imports.drafts.approval) tells a stale approval from a valid one without a signal; the change
    also records the voiding (`voided_at`) for the audit trail.
    """

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"

    class Reason(models.TextChoices):
        CORRECTION = "correction", "Correction"
        MERGE = "merge", "Merge"
        DEIDENTIFICATION = "de-identification", "De-identification"

    draft = models.ForeignKey(
        ImportDraft, on_delete=models.CASCADE, related_name="approvals"
    )
    draft_version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Copied, so that the job page still names the approver after the account is deleted.
    approver_username = models.CharField(max_length=150)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    objects = DraftApprovalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.approver_username}"
