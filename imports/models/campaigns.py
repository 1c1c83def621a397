"""Archive campaigns: a plan of quota-sized import jobs over source prefixes, its staging copies, and what
became of every object (imports.campaigns)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from imports.models.datastores import Datastore
from imports.models.jobs import ImportJob
from imports.models.scans import Scan


class Campaign(models.Model):
    """An archive planned into jobs. Nothing runs until it is started (`campaign start`)."""

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        # Every job ended, but some objects have no outcome yet (results still being read).
        ENDED = "ended", "Ended, not all accounted for"
        COMPLETED = "completed", "Completed"

    datastore = models.ForeignKey(
        Datastore, on_delete=models.PROTECT, related_name="campaigns"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PLANNED, db_index=True
    )
    staging_uri = models.CharField(max_length=1024, blank=True)
    max_files = models.PositiveIntegerField()
    max_bytes = models.PositiveBigIntegerField()
    max_folders = models.PositiveIntegerField()
    object_count = models.PositiveIntegerField(default=0)
    staged_objects = models.PositiveIntegerField(default=0)
    staged_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When its creator was told by email that it ended; set once, by the conditional UPDATE that sends it.
    notified_at = models.DateTimeField(null=True, blank=True)
    # When its staging copies were deleted (imports.campaigns.cleanup); set by the run that claims the clean-up.
    staging_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Campaign {self.pk}"


class CampaignSource(models.Model):
    """A source prefix of a campaign and the scan its plan was made from (checked unchanged at start)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="sources"
    )
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="+")
    input_uri = models.CharField(max_length=1024)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.input_uri


class CampaignJob(models.Model):
    """One planned StartDICOMImportJob of a campaign; `import_job` once it is handed to submission."""

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        STAGING = "staging", "Staging"
        STAGED = "staged", "Staged"
        STAGING_FAILED = "staging_failed", "Staging failed"
        # imports.jobs.submit refused it (the same request as a recent job, or a request AWS would refuse).
        REFUSED = "refused", "Refused"
        SUBMITTED = "submitted", "Handed to submission"
        CANCELLED = "cancelled", "Cancelled"

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="jobs"
    )
    number = models.PositiveIntegerField()
    input_s3_uri = models.CharField(max_length=1024)
    staged = models.BooleanField(default=False)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PLANNED
    )
    files = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    folders = models.PositiveIntegerField()
    # dicomMetadataMappings as sent: [{"studyInstanceUID", "seriesInstanceUID"?, "metadataFilePath"}].
    mappings = models.JSONField(default=list, blank=True)
    import_job = models.OneToOneField(
        ImportJob,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign_job",
    )
    error = models.TextField(blank=True)
    # Set once every object of the job has its outcome from the job's results.
    accounted_at = models.DateTimeField(null=True, blank=True)
    # How many times "Retry failed files" handed the job over again (imports.campaigns.retry); each attempt has
    # its own idempotency key, so a retry is submitted once and the first attempt is never submitted twice.
    attempt = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "number"], name="one_campaign_job_number"
            )
        ]

    def __str__(self) -> str:
        return f"Campaign {self.campaign_id}, job {self.number}"


class CampaignCopy(models.Model):
    """One CopyObject of staging, verified by ETag before the job may be submitted."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        COPIED = "copied", "Copied"
        FAILED = "failed", "Failed"
        # Deleted from the staging prefix once the campaign ended (imports.campaigns.cleanup).
        DELETED = "deleted", "Deleted"

    job = models.ForeignKey(
        CampaignJob, on_delete=models.CASCADE, related_name="copies"
    )
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    dest_bucket = models.CharField(max_length=63)
    dest_key = models.CharField(max_length=1024)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.PENDING
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["job", "status"], name="campaigncopy_status_idx")
        ]

    def __str__(self) -> str:
        return (
            f"s3://{self.bucket}/{self.key} → s3://{self.dest_bucket}/{self.dest_key}"
        )


class CampaignObject(models.Model):
    """One object of a campaign's sources, and what became of it: the line a migration is signed off on."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Not accounted for yet"
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        NOT_IMPORTED = "not_imported", "Not imported"

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="objects_of"
    )
    # Null for an object the plan skips (a non-DICOM file directly in a split folder).
    job = models.ForeignKey(
        CampaignJob,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="objects_of",
    )
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128, blank=True)
    size = models.PositiveBigIntegerField()
    # The key the job's results name: the source key, or the staged copy's.
    result_key = models.CharField(max_length=1024)
    # Why the dashboard does not import it ("not DICOM", "a metadata file"); empty when it is to be imported.
    skip_reason = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, default=Outcome.PENDING
    )
    # AWS's reason for a failure, or why the object was not imported.
    reason = models.TextField(blank=True)
    image_set_id = models.CharField(max_length=32, blank=True)
    image_set_version = models.PositiveIntegerField(null=True, blank=True)
    is_primary = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["campaign", "outcome"], name="campaignobject_outcome_idx"
            ),
            models.Index(
                fields=["job", "result_key"], name="campaignobject_result_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
