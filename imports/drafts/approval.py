"""Four eyes on patient data: a draft whose metadata files set a patient attribute needs a second person's approval.

A patient attribute is what pages mask (imports.dicom.patient.is_patient_attribute): the Patient group (0010,xxxx:
PatientName, PatientID, PatientBirthDate, PatientSex, OtherPatientIDs, IssuerOfPatientID, …) and every person
name. A mapped file that sets one needs approval whether or not the value differs from the instances': the scan
indexes only PatientName and PatientID, and a file that sets a patient attribute is the very thing to look at twice.

An approval holds for the draft's version and content hash it names (a comparison, no signal): any change bumps
the version, and `approvals_void` (called by every change, imports.drafts.services._editing) records the voiding.
The approver holds `imports.approve_patient_changes` and is not the author of the draft's last change (its
`changed_by`, else its owner). Datastore.require_approval (on by default) decides whether confirmation needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.dicom.patient import is_patient_attribute
from imports.dicom.tags import tag_label
from imports.models import AuditEvent, DraftApproval, ImportDraft, ImportJob
from imports.models import ObjectHeader as Header
from imports.roles import APPROVE_PERMISSION

PERMISSION = f"imports.{APPROVE_PERMISSION}"
_TAG_LENGTH = 8


class ApprovalRefused(Exception):
    """Nothing was recorded; the message says why."""


@dataclass(frozen=True)
class PatientChanges:
    tags: list[str]  # labels: "PatientID (0010,0020)"
    files: int  # how many mapped files set at least one

    def __bool__(self) -> bool:
        return bool(self.tags)


def draft_patient_changes(*, draft: ImportDraft) -> PatientChanges:
    """The patient attributes the draft's mapped files set (one query for the mappings, one for the files)."""
    if draft.scan is None:
        return PatientChanges([], 0)
    prefix = draft.scan.prefix
    mapped = [
        prefix + path
        for path in draft.mappings.values_list("metadata_file_path", flat=True)
    ]
    if not mapped:
        return PatientChanges([], 0)
    tags: set[int] = set()
    files = 0
    documents = (
        Header.objects.of_scan(draft.scan)
        .filter(key__in=mapped, kind=Header.Kind.JSON)
        .values_list("json_document", flat=True)
    )
    # The files as the scan holds them now: one rewritten since it was mapped is also a validation error.
    for document in documents:
        if not isinstance(document, dict):
            continue
        found = {
            int(k, 16)
            for k, attribute in document.items()
            if len(k) == _TAG_LENGTH
            and isinstance(attribute, dict)
            and _hex(k)
            and is_patient_attribute(int(k, 16), str(attribute.get("vr", "")))
        }
        files += bool(found)
        tags |= found
    return PatientChanges([tag_label(t) for t in sorted(tags)], files)


def _hex(key: str) -> bool:
    try:
        int(key, 16)
    except ValueError:
        return False
    return True


def draft_author(draft: ImportDraft) -> User | None:
    """Who made the draft's last change: its `changed_by`, else its owner (None: the system)."""
    return draft.changed_by or draft.owner


def approval_latest(*, draft: ImportDraft) -> DraftApproval | None:
    """The last decision on the draft, whatever it was and whether it still holds (what the page shows)."""
    return draft.approvals.order_by("-created_at", "-id").first()


def approval_holds(approval: DraftApproval | None, draft: ImportDraft) -> bool:
    """Whether this decision approves the draft as it is now: the last decision wins, for this very version."""
    return (
        approval is not None
        and approval.decision == DraftApproval.Decision.APPROVED
        and approval.voided_at is None
        and approval.draft_version == draft.version
        and approval.content_hash == draft.content_hash
    )


def approval_current(*, draft: ImportDraft) -> DraftApproval | None:
    """The approval that holds for the draft as it is now, or None."""
    latest = approval_latest(draft=draft)
    return latest if approval_holds(latest, draft) else None


@dataclass(frozen=True)
class ApprovalCard:
    """What the draft page shows about approval (three queries at most)."""

    changes: PatientChanges
    required: bool
    latest: DraftApproval | None
    holds: bool
    can_decide: (
        bool  # holds the permission, is not the author, the draft is not confirmed
    )
    is_author: bool


def approval_card(*, draft: ImportDraft, user: User | None) -> ApprovalCard:
    changes = draft_patient_changes(draft=draft)
    latest = approval_latest(draft=draft) if changes else None
    author = draft_author(draft)
    is_author = user is not None and author is not None and author.pk == user.pk
    allowed = user is not None and user.has_perm(PERMISSION)
    return ApprovalCard(
        changes=changes,
        required=draft.datastore.require_approval,
        latest=latest,
        holds=approval_holds(latest, draft),
        can_decide=bool(changes)
        and allowed
        and not is_author
        and not draft.confirmed_at,
        is_author=is_author,
    )


def approval_problem(*, draft: ImportDraft) -> str:
    """Why the draft cannot be confirmed yet for want of an approval ("" when it can)."""
    if not draft.datastore.require_approval:
        return ""
    changes = draft_patient_changes(draft=draft)
    if not changes:
        return ""
    latest = approval_latest(draft=draft)
    if approval_holds(latest, draft):
        return ""
    listed = ", ".join(changes.tags[:5]) + (", …" if len(changes.tags) > 5 else "")
    if latest is not None and latest.decision == DraftApproval.Decision.APPROVED:
        why = (
            f" {latest.approver_username}'s approval was voided by a later change to the draft; "
            "it must be approved again."
        )
    elif latest is not None:
        why = (
            f" {latest.approver_username} refused it; change the draft, then ask again."
        )
    else:
        why = ""
    return (
        f"This draft changes patient data ({listed} in {changes.files} mapped "
        f"file{'s' if changes.files != 1 else ''}): “{draft.datastore.name}” requires a second person "
        f"with the Approver permission, not the author of its last change, to approve it on the draft page "
        f"before it is confirmed.{why} Nothing was confirmed."
    )


def draft_decide(
    *,
    draft: ImportDraft,
    actor: User,
    version: int,
    approve: bool,
    reason: str,
    note: str,
) -> DraftApproval:
    """Approve (or refuse) the draft as it is at `version`, the version the approver saw; audited."""
    if not actor.has_perm(PERMISSION):
        raise ApprovalRefused(
            "Approving patient changes needs the Approver permission; ask an administrator."
        )
    if reason not in DraftApproval.Reason.values:
        raise ApprovalRefused(
            f"reason: '{reason}' is not a reason; choose one of "
            f"{', '.join(DraftApproval.Reason.values)}."
        )
    with transaction.atomic():
        current = (
            # Only the draft's row is locked: PostgreSQL refuses FOR UPDATE on the nullable side of the
            # outer joins that select_related makes for the scan, the owner and the last author.
            ImportDraft.objects.select_for_update(of=("self",))
            .select_related("datastore", "scan", "owner", "changed_by")
            .get(pk=draft.pk)
        )
        if current.confirmed_at is not None:
            raise ApprovalRefused(
                "This draft is already confirmed; there is nothing left to approve."
            )
        if current.version != version:
            raise ApprovalRefused(
                f"The draft changed since you opened it (version {version}, now {current.version}); "
                "review it again, then decide. Nothing was recorded."
            )
        changes = draft_patient_changes(draft=current)
        if not changes:
            raise ApprovalRefused(
                "This draft's metadata files set no patient attribute: it needs no approval."
            )
        author = draft_author(current)
        if author is not None and author.pk == actor.pk:
            raise ApprovalRefused(
                "You made this draft's last change: a second person must approve it (four eyes)."
            )
        decision = (
            DraftApproval.Decision.APPROVED
            if approve
            else DraftApproval.Decision.REFUSED
        )
        record = DraftApproval.objects.create(
            draft=current,
            draft_version=current.version,
            content_hash=current.content_hash,
            approver=actor,
            approver_username=actor.get_username(),
            decision=decision,
            reason=reason,
            note=note,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DRAFT_APPROVED
            if approve
            else AuditEvent.Action.DRAFT_APPROVAL_REFUSED,
            target=current,
            summary=f"{'Approved' if approve else 'Refused'} the patient changes of import draft {current.pk} "
            f"(version {current.version}, reason: {record.get_reason_display().lower()})",
            # Tags and the approver's note; the files' values never reach the trail.
            details={
                "approval": record.pk,
                "version": current.version,
                "content_hash": current.content_hash,
                "reason": reason,
                "note": note,
                "tags": changes.tags,
                "author": author.get_username() if author is not None else None,
            },
        )
    return record


def approvals_void(*, draft: ImportDraft, actor: Actor) -> None:
    """Void, and audit, every approval of an older version of the draft: called by each change of it."""
    stale = list(
        DraftApproval.objects.filter(
            draft=draft,
            decision=DraftApproval.Decision.APPROVED,
            voided_at__isnull=True,
        ).exclude(draft_version=draft.version, content_hash=draft.content_hash)
    )
    if not stale:
        return
    DraftApproval.objects.filter(pk__in=[a.pk for a in stale]).update(
        voided_at=timezone.now()
    )
    for approval in stale:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DRAFT_APPROVAL_VOIDED,
            target=draft,
            summary=f"{approval.approver_username}'s approval of import draft {draft.pk} (version "
            f"{approval.draft_version}) was voided by a change (now version {draft.version})",
            details={
                "approval": approval.pk,
                "approved_version": approval.draft_version,
            },
        )


def job_approval(job: ImportJob) -> DraftApproval | None:
    """The approval the job's draft was confirmed with, if it needed one."""
    return DraftApproval.objects.of_confirmed_draft(job.draft_id)
