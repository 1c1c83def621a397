from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from imports import validators

GB = 1000**3


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
        default=5000,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="Service quota “Maximum number of files in a DICOM import job” (default 5,000; adjustable).",
    )
    max_bytes_per_job = models.PositiveBigIntegerField(
        "size limit per job (bytes)",
        default=10 * GB,
        validators=[MinValueValidator(1), MaxValueValidator(10 * GB)],
        help_text="Service quota on the total size of a job (10 GB, not adjustable).",
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

    @property
    def datastore_arn_hint(self) -> str:
        return f"{self.region}/{self.datastore_id}"


class AuditEvent(models.Model):
    """One line of the audit trail: who did what, to what, when. Never edited, never deleted."""

    class Action(models.TextChoices):
        DATASTORE_CREATED = "datastore.created", "Datastore created"
        DATASTORE_CHANGED = "datastore.changed", "Datastore changed"
        DATASTORE_DELETED = "datastore.deleted", "Datastore deleted"
        DATASTORE_CHECKED = "datastore.checked", "Connection checked"
        SCAN_STARTED = "scan.started", "Scan started"
        SCAN_CANCELLED = "scan.cancelled", "Scan cancelled"
        PHI_REVEALED = "phi.revealed", "Patient details revealed"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The username is copied so the trail survives the deletion of the account.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx")
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username}: {self.summary}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("Audit events are append-only.")
        super().save(*args, **kwargs)
