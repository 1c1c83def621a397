from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from imports import validators

GB = 1000**3
# HealthImaging's service quotas (defaults; the file count is adjustable, the size is not).
DEFAULT_FILES_PER_JOB = 5000
MAX_BYTES_PER_JOB = 10 * GB
# "Maximum concurrent import jobs per data store" (L-23763099): 100 by default (20 in ap-southeast-2).
DEFAULT_CONCURRENT_JOBS = 100


class Datastore(models.Model):
    """A HealthImaging datastore the dashboard may import into, and how to reach it."""

    name = models.CharField(
        "display name",
        max_length=100,
        unique=True,
        help_text="How operators see this datastore, for example “Radiology production”.",
    )
    region = models.CharField(
        "AWS region",
        max_length=32,
        validators=[validators.validate_region],
        help_text="Region of the HealthImaging datastore, for example us-east-1.",
    )
    datastore_id = models.CharField(
        "datastore ID",
        max_length=32,
        validators=[validators.validate_datastore_id],
        help_text="32 lowercase letters and digits, from the HealthImaging console.",
    )
    role_arn = models.CharField(
        "data access role ARN",
        max_length=validators.ROLE_ARN_MAX_LENGTH,
        validators=[validators.validate_role_arn],
        help_text="The IAM role HealthImaging assumes to read the input and write the output, "
        "for example arn:aws:iam::123456789012:role/HealthImagingImportRole.",
    )
    input_s3_uri = models.CharField(
        "default input S3 URI",
        max_length=validators.S3_URI_MAX_LENGTH,
        validators=[validators.validate_s3_uri],
        help_text="Where the DICOM P10 files and JSON metadata files wait, for example s3://bucket/incoming/.",
    )
    output_s3_uri = models.CharField(
        "output S3 URI",
        max_length=validators.S3_URI_MAX_LENGTH,
        validators=[validators.validate_output_s3_uri],
        help_text="Where HealthImaging writes each job's results; must end with “/”.",
    )
    input_owner_account_id = models.CharField(
        "input owner account ID",
        max_length=12,
        blank=True,
        validators=[validators.validate_account_id],
        help_text="Only for a bucket in another AWS account: that account's 12-digit ID. "
        "Leave empty otherwise (it is then not sent at all).",
    )
    max_files_per_job = models.PositiveIntegerField(
        "file limit per job",
        default=DEFAULT_FILES_PER_JOB,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="Service quota “Maximum number of files in a DICOM import job” (default 5,000; adjustable).",
    )
    max_bytes_per_job = models.PositiveBigIntegerField(
        "size limit per job (bytes)",
        default=MAX_BYTES_PER_JOB,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BYTES_PER_JOB)],
        help_text="Service quota on the total size of a job (10 GB, not adjustable).",
    )
    max_concurrent_jobs = models.PositiveIntegerField(
        "concurrent jobs",
        default=DEFAULT_CONCURRENT_JOBS,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Service quota “Maximum concurrent import jobs per data store” (default 100, 20 in "
        "ap-southeast-2; adjustable). Jobs past it wait in the dashboard's queue.",
    )
    enabled = models.BooleanField(
        default=True, help_text="Disabled datastores are hidden from operators."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["region", "datastore_id"],
                name="unique_datastore_per_region",
                violation_error_message="This datastore ID is already configured for this region; "
                "edit the existing entry instead.",
            ),
        ]
        permissions = [
            ("browse_datastore", "Can browse and scan S3 prefixes"),
            ("import_to_datastore", "Can compose and submit import jobs"),
            ("reveal_phi", "Can reveal masked patient names and IDs (audited)"),
            ("check_datastore", "Can run “Check connection”"),
            ("administer", "Can use the admin site (datastores, users and roles)"),
        ]

    def __str__(self) -> str:
        return self.name


class AppendOnlyError(Exception):
    """Someone tried to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Refuses every bulk path around `AuditEvent.save()`: the trail is append-only.

    The database refuses UPDATE and DELETE too (triggers, imports/auditguard.py); this layer gives
    the clearer error first. `bulk_create` is refused as well: it would skip the hash chain.
    """

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")

    def _raw_delete(self, using: str | None) -> int:
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[AuditEvent]:
        raise AppendOnlyError(
            "Audit events are written one at a time by imports.audit.audit_record, "
            "which chains each to the one before."
        )


class AuditEvent(models.Model):
    """One line of the audit trail: who did what, to what, when, from where. Never edited, never deleted.

    Each event carries the SHA-256 of its content chained to the previous event's hash
    (imports/auditchain.py), so an edit made around every guard is found by `manage.py verify_audit`.
    """

    class Action(models.TextChoices):
        DATASTORE_CREATED = "datastore.created", "Datastore created"
        DATASTORE_CHANGED = "datastore.changed", "Datastore changed"
        DATASTORE_DELETED = "datastore.deleted", "Datastore deleted"
        DATASTORE_CHECKED = "datastore.checked", "Connection checked"
        SCAN_STARTED = "scan.started", "Scan started"
        SCAN_CANCELLED = "scan.cancelled", "Scan cancelled"
        PHI_REVEALED = "phi.revealed", "Patient details revealed"
        ACCOUNT_ADDED = "account.added", "Account or role added"
        ACCOUNT_CHANGED = "account.changed", "Account or role changed"
        ACCOUNT_DELETED = "account.deleted", "Account or role deleted"
        SIGNED_IN = "user.signed_in", "Signed in"
        SIGNED_OUT = "user.signed_out", "Signed out"
        SIGN_IN_FAILED = "user.sign_in_failed", "Sign-in failed"
        DRAFT_CREATED = "draft.created", "Import draft created"
        DRAFT_CHANGED = "draft.changed", "Import draft changed"
        DRAFT_DELETED = "draft.deleted", "Import draft deleted"
        DRAFT_CONFIRMED = "draft.confirmed", "Import draft confirmed"
        JOB_CREATED = "job.created", "Import job confirmed"
        JOB_STATUS_CHANGED = "job.status_changed", "Import job status changed"
        JOB_DISCOVERED = "job.discovered", "External import job found"
        JOB_DRAFTED = "job.drafted", "Draft made from an import job"
        METADATA_WRITTEN = "metadata.written", "Metadata file written"
        EXPORTED = "data.exported", "Data exported"

    created_at = models.DateTimeField(
        default=timezone.now, editable=False, db_index=True
    )
    # The username is copied so the trail survives the deletion of the account. No database
    # constraint and no ON DELETE action: deleting a user must not UPDATE audit rows (the trigger
    # refuses that), so the id simply stays, naming an account that is gone.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
    )
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    # Text rather than GenericIPAddressField: PostgreSQL's inet would re-spell some addresses
    # (::ffff:1.2.3.4) and the hash must be computed over exactly what is stored. Blank when no
    # request was involved (the Celery worker, the CLI).
    ip = models.CharField("IP address", max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    previous_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx")
        ]
        # Django's own machinery (related lookups, the deletion collector) uses the base manager:
        # make it this refusing one too.
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username}: {self.summary}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError(
                "Audit events are append-only: they cannot be updated."
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")


# --- Scanning -------------------------------------------------------------------------------


class ObjectHeaderQuerySet(models.QuerySet["ObjectHeader"]):
    def of_scan(self, scan: Scan) -> ObjectHeaderQuerySet:
        """The object versions a scan found (through ScanObject)."""
        return self.filter(
            pk__in=ScanObject.objects.filter(scan=scan).values("header_id")
        )


class ObjectHeader(models.Model):
    """What one S3 object version holds, read once: the scan cache.

    Keyed by (bucket, key, ETag): an object rewritten in place gets a new ETag and so a new read,
    while an unchanged prefix is rescanned without a single GET.
    """

    class Kind(models.TextChoices):
        DICOM = "dicom", "DICOM"
        JSON = "json", "JSON"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OK = "ok", "Read"
        UNREADABLE = "unreadable", "Unreadable"
        NOT_DICOM = "not_dicom", "Not DICOM"
        JSON_VALID = "json_valid", "Valid DICOM JSON"
        JSON_INVALID = "json_invalid", "Invalid DICOM JSON"

    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    # DICOM attributes (empty for other kinds). Patient attributes are PHI: shown masked by default.
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    study_date = models.CharField(max_length=18, blank=True)
    study_description = models.CharField(max_length=256, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=256, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    header_length = models.PositiveBigIntegerField(null=True, blank=True)
    # JSON metadata files: the UIDs they name and what is wrong with them.
    json_study_uids = models.JSONField(default=list, blank=True)
    json_series_uids = models.JSONField(default=list, blank=True)
    json_errors = models.JSONField(default=list, blank=True)
    # The parsed DICOM JSON object (files within SCAN_JSON_MAX_BYTES), so that validation and the
    # preview never read an unchanged file twice.
    json_document = models.JSONField(null=True, blank=True)
    # What reading cost, for the benchmark and the CLI.
    bytes_read = models.PositiveBigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    read_at = models.DateTimeField(auto_now_add=True)
    # False when S3's answer was about access, not content (AccessDenied, a key gone since the
    # listing): the scan that got it keeps it, a later scan reads the object again into a row of its own.
    reusable = models.BooleanField(default=True)

    objects = ObjectHeaderQuerySet.as_manager()

    class Meta:
        constraints = [
            # One reusable result per object version: the cache. Rows that are not reusable belong to
            # the scan that made them and are never overwritten, so a finished scan's results stay put.
            models.UniqueConstraint(
                fields=["bucket", "key", "etag"],
                condition=models.Q(reusable=True),
                name="unique_object_version",
            ),
        ]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Scan(models.Model):
    """One scan of an S3 prefix: its progress, and the index it produced."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # Ended, but S3 did not answer for some objects within SCAN_PATIENCE_S (ScanUnread holds them):
        # not a basis for an import until "read the rest" completes it.
        INCOMPLETE = "incomplete", "Incomplete"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    datastore = models.ForeignKey(
        Datastore,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scans",
    )
    region = models.CharField(max_length=32)
    bucket = models.CharField(max_length=63)
    prefix = models.CharField(max_length=1024, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # Progress counters, updated as the scan goes, read by the polling page.
    objects_listed = models.PositiveIntegerField(default=0)
    objects_done = models.PositiveIntegerField(default=0)
    objects_cached = models.PositiveIntegerField(default=0)
    objects_unreadable = models.PositiveIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    folders = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    bytes_read = models.PositiveBigIntegerField(default=0)
    # Limits at the time of the scan (the datastore's quotas, or the AWS defaults).
    max_files = models.PositiveIntegerField(default=DEFAULT_FILES_PER_JOB)
    max_bytes = models.PositiveBigIntegerField(default=MAX_BYTES_PER_JOB)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Origin(models.TextChoices):
        DASHBOARD = "dashboard", "the dashboard"
        CLI = "cli", "the command line (manage.py scan)"

    # Where the scan was started: a CLI scan has no user, and must not read as "system".
    origin = models.CharField(
        max_length=16, choices=Origin.choices, default=Origin.DASHBOARD
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with every progress update; a running scan whose heartbeat stops lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when the last listing page arrived: objects_listed is then the whole prefix.
    listing_finished_at = models.DateTimeField(null=True, blank=True)
    # Set while S3 is not answering and the scan waits for it (the circuit breaker is open).
    paused_since = models.DateTimeField(null=True, blank=True)
    # Objects listed but not read yet because S3 failed transiently (ScanUnread rows, same transaction).
    objects_pending = models.PositiveIntegerField(default=0)

    MAX_FOLDERS = 10_000

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["bucket", "prefix", "status"], name="scan_prefix_status_idx"
            )
        ]
        constraints = [
            # One active scan per prefix: a second "Scan" press joins the running one (scan_start).
            models.UniqueConstraint(
                fields=["bucket", "prefix"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_scan_per_prefix",
            ),
        ]

    def __str__(self) -> str:
        return self.uri

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def listing_finished(self) -> bool:
        return self.listing_finished_at is not None

    @property
    def percent_done(self) -> int | None:
        """Objects with a result against the whole prefix; None while the listing is still going."""
        if self.listing_finished_at is None:
            return None
        if not self.objects_listed:
            return 100
        return min(100, 100 * self.objects_done // self.objects_listed)


class ScanObject(models.Model):
    """An object a scan found, pointing at the cached header read for its version."""

    scan = models.ForeignKey(
        Scan, on_delete=models.CASCADE, related_name="scan_objects"
    )
    header = models.ForeignKey(ObjectHeader, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "header"], name="unique_scan_object"
            )
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id}, object header {self.header_id}"


class ScanStudy(models.Model):
    """A study in a completed scan, with the values its instances agree on (or not)."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="studies")
    study_instance_uid = models.CharField(max_length=64)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    study_date = models.CharField(max_length=18, blank=True)
    study_description = models.CharField(max_length=256, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    instance_count = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    # {"StudyDescription": ["CT CHEST", "CT Chest"]}: attributes whose instances disagree.
    variants = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["patient_id", "study_date", "study_instance_uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "study_instance_uid"], name="unique_scan_study"
            )
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class ScanSeries(models.Model):
    """A series in a completed scan."""

    study = models.ForeignKey(
        ScanStudy, on_delete=models.CASCADE, related_name="series"
    )
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=256, blank=True)
    instance_count = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    transfer_syntaxes = models.JSONField(default=list, blank=True)
    variants = models.JSONField(default=dict, blank=True)
    # One instance's header, the base of the metadata preview.
    sample_header = models.ForeignKey(
        ObjectHeader, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["series_number", "series_instance_uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "series_instance_uid"], name="unique_scan_series"
            )
        ]

    def __str__(self) -> str:
        return self.series_instance_uid


class ScanUnread(models.Model):
    """An object a scan listed but could not read yet because S3 failed transiently.

    Never a result: the object is read again later in the scan, and if S3 stays away past the
    patience these rows are what an Incomplete scan lacks and what "read the rest" reads.
    """

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="unread")
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    # The last failure, for the operator (an AwsError sentence; no file content).
    error = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scan", "key"], name="unique_scan_unread")
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id}: {self.key}"


# --- Composing an import --------------------------------------------------------------------


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
    # sha256 over the mappings and the ETags of the files they name (drafts.draft_content_hash).
    content_hash = models.CharField(max_length=64, blank=True)
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
    study_instance_uid = models.CharField(max_length=64)
    # Empty for a study-level mapping.
    series_instance_uid = models.CharField(max_length=64, blank=True)
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


# --- Import jobs ----------------------------------------------------------------------------


class ImportJob(models.Model):
    """One StartDICOMImportJob: the exact request, its idempotency token, and what AWS made of it.

    Dashboard jobs start PENDING and reach AWS exactly once: `client_token` is sent with every attempt,
    so a retry (Celery's, or after a crash) gets the same AWS job back. Jobs started elsewhere (console,
    CLI) are found by the ListDICOMImportJobs sync and stored with `external` set.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        SUBMITTING = "submitting", "Submitting"
        SUBMIT_FAILED = "submit_failed", "Not submitted"
        SUBMITTED = "submitted", "Submitted"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    # Counted against the datastore's concurrent-job quota.
    IN_FLIGHT = (Status.SUBMITTING, Status.SUBMITTED, Status.IN_PROGRESS)
    # Watched by the poller.
    AT_AWS = (Status.SUBMITTED, Status.IN_PROGRESS)
    ENDED = (Status.SUBMIT_FAILED, Status.COMPLETED, Status.FAILED)
    # What AWS says (JobStatus enum) -> ours.
    FROM_AWS = {
        "SUBMITTED": Status.SUBMITTED,
        "IN_PROGRESS": Status.IN_PROGRESS,
        "COMPLETED": Status.COMPLETED,
        "FAILED": Status.FAILED,
    }

    class Results(models.TextChoices):
        NONE = "none", "Not yet"
        PENDING = "pending", "Waiting to be read"
        INGESTING = "ingesting", "Being read"
        DONE = "done", "Read"

    datastore = models.ForeignKey(
        Datastore, on_delete=models.PROTECT, related_name="jobs"
    )
    draft = models.ForeignKey(
        ImportDraft,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="import_jobs",
    )
    external = models.BooleanField(default=False)
    # The StartDICOMImportJob parameters exactly as boto3 takes them, clientToken aside.
    request = models.JSONField(default=dict, blank=True)
    request_sha256 = models.CharField(max_length=64, blank=True)
    client_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # The confirmation form's key: a double POST finds the job the first one made.
    idempotency_key = models.CharField(
        max_length=64, unique=True, null=True, blank=True
    )
    job_name = models.CharField(max_length=64, blank=True)
    input_s3_uri = models.CharField(max_length=1024, blank=True)
    # The bucket of input_s3_uri, for the duplicate-import guard's join with object headers.
    input_bucket = models.CharField(max_length=63, blank=True)
    mapping_count = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    aws_job_id = models.CharField("AWS job ID", max_length=32, blank=True)
    # The job's output folder as GetDICOMImportJob returns it ({output}{datastoreId}-DicomImport-{jobId}/).
    output_folder_uri = models.CharField(max_length=1100, blank=True)
    message = models.TextField(blank=True, help_text="AWS's message on a failed job")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    # A submission attempt owns the job until then; a worker lost mid-call lets it lapse.
    lease_until = models.DateTimeField(null=True, blank=True)
    # After a transient error: not to be tried again before then (exponential backoff).
    retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    results = models.CharField(
        max_length=16, choices=Results.choices, default=Results.NONE
    )
    results_error = models.TextField(blank=True)
    results_lease_until = models.DateTimeField(null=True, blank=True)
    # From job-output-manifest.json (jobSummary).
    scanned_files = models.PositiveIntegerField(null=True, blank=True)
    imported_files = models.PositiveIntegerField(null=True, blank=True)
    customer_error_files = models.PositiveIntegerField(null=True, blank=True)
    server_error_files = models.PositiveIntegerField(null=True, blank=True)
    generated_image_sets = models.PositiveIntegerField(null=True, blank=True)
    image_sets = models.JSONField(default=list, blank=True)
    # Counted from the ndjson files.
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    warning_count = models.PositiveIntegerField(default=0)
    invalid_line_count = models.PositiveIntegerField(default=0)
    non_primary_count = models.PositiveIntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["datastore", "status"], name="job_datastore_status_idx"
            ),
            models.Index(fields=["status", "next_poll_at"], name="job_poll_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["datastore", "aws_job_id"],
                condition=~models.Q(aws_job_id=""),
                name="one_row_per_aws_job",
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk}" + (f" ({self.job_name})" if self.job_name else "")

    @property
    def has_ended(self) -> bool:
        return self.status in self.ENDED

    @property
    def is_live(self) -> bool:
        """Worth polling: not ended, or ended with its results still being read."""
        return not self.has_ended or self.results in (
            self.Results.PENDING,
            self.Results.INGESTING,
        )

    @property
    def completed_with_errors(self) -> bool:
        return self.status == self.Status.COMPLETED and bool(
            self.failure_count
            or self.customer_error_files
            or self.server_error_files
            or self.invalid_line_count
        )

    @property
    def display_status(self) -> str:
        if self.completed_with_errors:
            return "Completed with errors"
        return str(self.get_status_display())

    @property
    def status_code(self) -> str:
        """The status a script reads: our status, or completed_with_errors."""
        return "completed_with_errors" if self.completed_with_errors else self.status

    @property
    def badge_class(self) -> str:
        if self.status == self.Status.COMPLETED:
            return "warn" if self.completed_with_errors else "ok"
        if self.status in (self.Status.FAILED, self.Status.SUBMIT_FAILED):
            return "err"
        return ""


class ImportJobResult(models.Model):
    """One line of a job's SUCCESS, FAILURE or WARNING ndjson file."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Imported"
        WARNING = "warning", "Imported with warnings"
        FAILURE = "failure", "Failed"
        INVALID = "invalid", "Unreadable result line"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="files")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    line = models.PositiveIntegerField()
    input_file = models.CharField(max_length=1024, blank=True)
    image_set_id = models.CharField(max_length=32, blank=True)
    image_set_version = models.PositiveIntegerField(null=True, blank=True)
    is_primary = models.BooleanField(null=True, blank=True)
    exception_type = models.CharField(max_length=128, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["job", "outcome"], name="jobresult_outcome_idx"),
            models.Index(fields=["job", "input_file"], name="jobresult_file_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()}: {self.input_file}"


class RateLimit(models.Model):
    """The database's rate limiter (imports.limiter), when there is no Redis: the next free slot per name."""

    name = models.CharField(max_length=64, primary_key=True)
    next_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
