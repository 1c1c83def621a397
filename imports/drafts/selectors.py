"""Queries about drafts for the pages: the Drafts list, and the open draft "Fix" reuses."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from imports.audit.records import Actor
from imports.models import ImportDraft, ImportJob, Scan


def drafts_listed(
    *, owner: Any = None, state: str = "", text: str = ""
) -> QuerySet[ImportDraft]:
    """The Drafts list, with its mapping counts; `state` is the last validation's verdict."""
    # Ordered here, not only by Meta.ordering: Django leaves that out of a GROUP BY query (the count), and
    # pages of an unordered list can repeat or skip drafts.
    first_job = ImportJob.objects.filter(draft=OuterRef("pk")).order_by(
        "created_at", "pk"
    )
    drafts = (
        ImportDraft.objects.select_related("datastore", "owner")
        .annotate(
            mapping_count=Count("mappings"),
            # The job a confirmed draft made, for its link (a subquery: a join would multiply the count).
            confirmed_job_id=Subquery(first_job.values("pk")[:1]),
        )
        .order_by("-updated_at", "-id")
    )
    if owner is not None:
        drafts = drafts.filter(owner=owner)
    if state == "error":
        drafts = drafts.filter(error_count__gt=0)
    elif state == "warning":
        drafts = drafts.filter(error_count=0, warning_count__gt=0)
    elif state == "valid":
        drafts = drafts.filter(error_count=0, warning_count=0, mapping_count__gt=0)
    elif state == "empty":
        drafts = drafts.filter(mapping_count=0)
    if text:
        drafts = drafts.filter(
            Q(job_name__icontains=text) | Q(input_s3_uri__icontains=text)
        )
    return drafts


def draft_open_for_scan(*, actor: Actor, scan: Scan) -> ImportDraft | None:
    """The actor's latest draft of the scan's prefix and datastore that no job was made from yet.

    "Fix" on the scan page reuses it, so fixing three attributes edits one draft instead of making three.
    """
    if not isinstance(actor, User) or scan.datastore is None:
        return None
    return (
        ImportDraft.objects.filter(
            owner=actor,
            datastore=scan.datastore,
            input_s3_uri=scan.uri,
            jobs__isnull=True,
        )
        .order_by("-updated_at", "-pk")
        .first()
    )
