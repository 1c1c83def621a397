"""The audit trail: append-only, hash-chained events (imports.audit.records writes them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    """Someone tried to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Refuses every bulk path around `AuditEvent.save()`: the trail is append-only.

    The database refuses UPDATE and DELETE too (triggers, imports/audit/guard.py); this layer gives
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
            "Audit events are written one at a time by imports.audit.records.audit_record, "
            "which chains each to the one before."
        )


class AuditEvent(models.Model):
    """One line of the audit trail: who did what, to what, when, from where. Never edited, never deleted.

    Each event carries the SHA-256 of its content chained to the previous event's hash
    (imports/audit/chain.py), so an edit made around every guard is found by `manage.py verify_audit`.
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
        DRAFT_APPROVED = "draft.approved", "Patient changes approved"
        DRAFT_APPROVAL_REFUSED = "draft.approval_refused", "Patient changes refused"
        DRAFT_APPROVAL_VOIDED = "draft.approval_voided", "Approval voided by a change"
        JOB_CREATED = "job.created", "Import job confirmed"
        JOB_STATUS_CHANGED = "job.status_changed", "Import job status changed"
        JOB_DISCOVERED = "job.discovered", "External import job found"
        JOB_DRAFTED = "job.drafted", "Draft made from an import job"
        JOB_ADOPTED = "job.adopted", "External import job adopted by its dashboard job"
        JOB_VERIFIED = "job.verified", "Import job verified"
        RECORD_WRITTEN = "job.record_written", "Signed import record written"
        METADATA_WRITTEN = "metadata.written", "Metadata file written"
        CAMPAIGN_PLANNED = "campaign.planned", "Campaign planned"
        CAMPAIGN_STARTED = "campaign.started", "Campaign started"
        CAMPAIGN_PAUSED = "campaign.paused", "Campaign paused"
        CAMPAIGN_RESUMED = "campaign.resumed", "Campaign resumed"
        CAMPAIGN_CANCELLED = "campaign.cancelled", "Campaign cancelled"
        CAMPAIGN_RETRIED = "campaign.retried", "Campaign's failed files retried"
        CAMPAIGN_STAGING_DELETED = (
            "campaign.staging_deleted",
            "Campaign's staging copies deleted",
        )
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
