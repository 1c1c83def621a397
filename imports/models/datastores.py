"""Datastores: the HealthImaging datastores the dashboard may import into, with their quotas."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from imports import validators

GB = 1000**3
# HealthImaging's service quotas (defaults; the file count is adjustable, the size is not).
DEFAULT_FILES_PER_JOB = 5000
MAX_BYTES_PER_JOB = 10 * GB
# "Maximum concurrent import jobs per data store" (L-23763099): 100 by default (20 in ap-southeast-2).
DEFAULT_CONCURRENT_JOBS = 100
# StartDICOMImportJob's throttling rate. Two copies of AWS's throttling page disagree: the older lists 1 call per
# second (burst 2), a newer one 40 per second (burst 80). 1 is the safe default; raise it when the account's quota
# allows. AWS counts the calls per account and region, so datastores of one account in one region share that rate.
DEFAULT_START_JOBS_PER_SECOND = 1.0
MIN_START_JOBS_PER_SECOND = 0.1
MAX_START_JOBS_PER_SECOND = 40.0


def validate_start_jobs_per_second(value: float) -> None:
    # One comparison that NaN also fails (MinValueValidator and MaxValueValidator would both let NaN through).
    if not MIN_START_JOBS_PER_SECOND <= value <= MAX_START_JOBS_PER_SECOND:
        raise ValidationError(
            "Enter a rate between 0.1 and 40 submissions per second. AWS's older throttling page lists "
            "StartDICOMImportJob at 1 per second (burst 2), a newer one at 40 per second (burst 80).",
            code="start_rate",
        )


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
    start_jobs_per_second = models.FloatField(
        "job submissions per second",
        default=DEFAULT_START_JOBS_PER_SECOND,
        validators=[validate_start_jobs_per_second],
        help_text="StartDICOMImportJob calls the dashboard makes into this datastore per second, across all "
        "workers: 0.1 to 40 (default 1). AWS's older throttling page lists 1 per second (burst 2), a newer "
        "one 40 (burst 80); AWS counts them per account and region, so datastores sharing an account share it.",
    )
    enabled = models.BooleanField(
        default=True, help_text="Disabled datastores are hidden from operators."
    )
    require_approval = models.BooleanField(
        "require approval of patient changes",
        default=True,
        help_text="A draft whose metadata files set a patient attribute (group 0010 or a person name) must be "
        "approved by a second person with the Approver permission before it can be confirmed. Turning this "
        "off is recorded in the audit trail.",
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
            (
                "approve_patient_changes",
                "Can approve drafts that change patient data (not their own changes)",
            ),
        ]

    def __str__(self) -> str:
        return self.name
