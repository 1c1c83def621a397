"""Import jobs: what was sent to HealthImaging, how it went, and what happened to each file."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from imports.models.datastores import Datastore
from imports.models.drafts import ImportDraft


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

    class Verification(models.TextChoices):
        # Not due: the job has not ended, or it ended without results to verify.
        NONE = "none", "Not due"
        PENDING = "pending", "Waiting to be verified"
        RUNNING = "running", "Being verified"
        VERIFIED = "verified", "Verified"
        MISMATCHES = "mismatches", "Mismatches found"
        NOT_VERIFIED = "not_verified", "Not verified yet"

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
    # The first submission attempt: transient errors are retried for JOB_SUBMIT_PATIENCE_S from then.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    # An attempt was sent but not answered (read timeout, connection lost): AWS may hold the job, so
    # the submission never ends as "not submitted" without asking ListDICOMImportJobs first.
    outcome_unknown = models.BooleanField(default=False)
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
    # The reader holding the results (its claim's token), and how far it has stored them: [file, line] of
    # RESULT_FILES (imports.jobs.results), so a reader that replaces a dead one resumes after that line.
    results_reader = models.CharField(max_length=36, blank=True)
    results_resume = models.JSONField(default=list, blank=True)
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
    # What the submission predicted (imports.drafts.prediction.prediction_for_job): counts and one entry a
    # series with its outcome, image set and version; {} when nothing was predicted (an external job).
    prediction = models.JSONField(default=dict, blank=True)
    # Whether what happened (isPrimary, version) matched the prediction; None until verified or unpredicted.
    prediction_confirmed = models.BooleanField(null=True, blank=True)
    # After the results are read (imports.jobs.verification): did every override reach the stored metadata?
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.NONE
    )
    # Counts, mismatches file by file, wrong predictions, the reason when not verified, and progress so far.
    verification_detail = models.JSONField(default=dict, blank=True)
    verification_lease_until = models.DateTimeField(null=True, blank=True)
    verification_started_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # The signed import record (imports.jobs.record), written once the job is verified; {} before.
    record = models.JSONField(default=dict, blank=True)

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
    """The database's rate limiter (imports.jobs.limiter), when there is no Redis: the next free slot per name."""

    name = models.CharField(max_length=64, primary_key=True)
    next_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
