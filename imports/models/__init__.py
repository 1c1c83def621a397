"""The dashboard's models, one module per capability; everything is importable from `imports.models`."""

from __future__ import annotations

from imports.models.audit import AppendOnlyError, AuditEvent, AuditEventQuerySet
from imports.models.campaigns import (
    Campaign,
    CampaignCopy,
    CampaignJob,
    CampaignObject,
    CampaignSource,
)
from imports.models.datastores import (
    DEFAULT_CONCURRENT_JOBS,
    DEFAULT_FILES_PER_JOB,
    GB,
    MAX_BYTES_PER_JOB,
    Datastore,
)
from imports.models.drafts import (
    DraftApproval,
    DraftMapping,
    DraftPrediction,
    ImportDraft,
)
from imports.models.jobs import ImportJob, ImportJobResult, RateLimit
from imports.models.operations import Heartbeat, TaskLease
from imports.models.scans import (
    ObjectHeader,
    ObjectHeaderQuerySet,
    Scan,
    ScanChunk,
    ScanObject,
    ScanSeries,
    ScanStudy,
    ScanUnread,
)

__all__ = [
    "DEFAULT_CONCURRENT_JOBS",
    "DEFAULT_FILES_PER_JOB",
    "GB",
    "MAX_BYTES_PER_JOB",
    "AppendOnlyError",
    "AuditEvent",
    "AuditEventQuerySet",
    "DraftApproval",
    "Campaign",
    "CampaignCopy",
    "CampaignJob",
    "CampaignObject",
    "CampaignSource",
    "Datastore",
    "Heartbeat",
    "TaskLease",
    "DraftMapping",
    "DraftPrediction",
    "ImportDraft",
    "ImportJob",
    "ImportJobResult",
    "ObjectHeader",
    "ObjectHeaderQuerySet",
    "RateLimit",
    "Scan",
    "ScanChunk",
    "ScanObject",
    "ScanSeries",
    "ScanStudy",
    "ScanUnread",
]
