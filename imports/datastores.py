"""Datastores: creating one, and checking that an import into it can work."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.models import AuditEvent, Datastore
from imports.validators import split_s3_uri


def datastore_create(*, actor: Actor, **fields: Any) -> Datastore:
    """Validate and save a datastore. Raises ValidationError naming each bad field; saves nothing then."""
    datastore = Datastore(**fields)
    datastore.full_clean()
    with transaction.atomic():
        datastore.save()
        datastore_record_saved(actor=actor, datastore=datastore, before=None)
    return datastore


def datastore_snapshot(datastore: Datastore) -> dict[str, Any]:
    """The settings an auditor compares before and after a change (not the timestamps)."""
    return {
        field.attname: getattr(datastore, field.attname)
        for field in Datastore._meta.concrete_fields
        if field.name not in {"id", "created_at", "updated_at"}
    }


def datastore_record_saved(
    *, actor: Actor, datastore: Datastore, before: dict[str, Any] | None
) -> None:
    """Audit a datastore just saved: all its settings if new, else each changed one, before and after."""
    after = datastore_snapshot(datastore)
    if before is None:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DATASTORE_CREATED,
            target=datastore,
            summary=f"Created datastore “{datastore.name}” ({datastore.region}/{datastore.datastore_id})",
            details={"after": after},
        )
        return
    changes = {
        name: {"before": before.get(name), "after": value}
        for name, value in after.items()
        if before.get(name) != value
    }
    # Four eyes on patient data is a safeguard: turning it off says so in the summary every viewer reads.
    approval = changes.get("require_approval")
    turned = (
        " (approval of patient changes turned OFF)"
        if approval and not approval["after"]
        else " (approval of patient changes turned on)"
        if approval
        else ""
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DATASTORE_CHANGED,
        target=datastore,
        summary=f"Changed datastore “{datastore.name}”"
        + (f": {', '.join(changes)}" if changes else " (nothing changed)")
        + turned,
        details={"changes": changes},
    )


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str


def datastore_check_connection(
    *, datastore: Datastore, actor: Actor
) -> list[CheckResult]:
    """Check, with the dashboard's credentials, what an import into this datastore will need.

    1. GetDatastore answers and the datastore is ACTIVE (StartDICOMImportJob needs ACTIVE).
    2. The input prefix can be listed (browsing and scanning need s3:ListBucket).
    3. A marker object can be written then deleted under the input prefix (the metadata editor saves there).
    4. A marker object can be written then deleted under the output prefix (job results land there).
    Every outcome is a sentence; nothing here raises for an AWS failure.
    """
    results = [
        _check_datastore_active(datastore),
        _check_input_listable(datastore),
        _check_input_writable(datastore),
        _check_output_writable(datastore),
    ]
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DATASTORE_CHECKED,
        target=datastore,
        summary=f"Checked connection of “{datastore.name}”: "
        + ("all checks passed" if all(r.ok for r in results) else "problems found"),
        details={
            "results": [
                {"name": r.name, "ok": r.ok, "message": r.message} for r in results
            ]
        },
    )
    return results


def _check_datastore_active(datastore: Datastore) -> CheckResult:
    name = "Datastore"
    try:
        info = aws.datastore_describe(
            region=datastore.region, datastore_id=datastore.datastore_id
        )
    except aws.NotFound:
        return CheckResult(
            name,
            False,
            f"There is no datastore {datastore.datastore_id} in {datastore.region}: check the ID and the region.",
        )
    except aws.AccessDenied as error:
        return CheckResult(
            name,
            False,
            f"The dashboard may not call medical-imaging:GetDatastore ({error.code}): {error}",
        )
    except aws.AwsError as error:
        return CheckResult(name, False, f"HealthImaging did not answer: {error}")
    if info.status != "ACTIVE":
        return CheckResult(
            name,
            False,
            f"Datastore “{info.name}” is {info.status}; imports need it to be ACTIVE.",
        )
    return CheckResult(name, True, f"Datastore “{info.name}” is ACTIVE.")


def _check_input_listable(datastore: Datastore) -> CheckResult:
    name = "Input prefix"
    bucket, prefix = split_s3_uri(datastore.input_s3_uri)
    try:
        page = aws.s3_list_page(
            region=datastore.region, bucket=bucket, prefix=prefix, max_keys=1
        )
    except aws.AwsError as error:
        return _s3_check_failed(name, "list", datastore.input_s3_uri, error)
    if not page.objects and not page.folders:
        return CheckResult(
            name, True, f"{datastore.input_s3_uri} can be listed; it is empty for now."
        )
    return CheckResult(name, True, f"{datastore.input_s3_uri} can be listed.")


def _check_input_writable(datastore: Datastore) -> CheckResult:
    name = "Input prefix (write)"
    written = _write_marker(datastore.region, datastore.input_s3_uri)
    if isinstance(written, aws.AwsError):
        failed = _s3_check_failed(name, "write to", datastore.input_s3_uri, written)
        return CheckResult(
            name,
            False,
            failed.message
            + " The metadata editor cannot save files there (it needs s3:PutObject).",
        )
    if written:
        return CheckResult(name, False, written)
    return CheckResult(
        name,
        True,
        f"{datastore.input_s3_uri} is writable (a test object was written and deleted): "
        "the metadata editor can save files there.",
    )


def _check_output_writable(datastore: Datastore) -> CheckResult:
    name = "Output prefix"
    written = _write_marker(datastore.region, datastore.output_s3_uri)
    if isinstance(written, aws.AwsError):
        return _s3_check_failed(name, "write to", datastore.output_s3_uri, written)
    if written:
        return CheckResult(name, False, written)
    return CheckResult(
        name,
        True,
        f"{datastore.output_s3_uri} is writable (a test object was written and deleted).",
    )


def _write_marker(region: str, uri: str) -> aws.AwsError | str:
    """Write then delete a marker object under `uri`: the error of the write, a sentence if only the delete
    failed, or "" when both worked."""
    bucket, prefix = split_s3_uri(uri)
    key = f"{prefix}.dashboard-connection-check-{uuid.uuid4().hex}"
    try:
        aws.s3_put_object(
            region=region,
            bucket=bucket,
            key=key,
            body=b"connection check\n",
            content_type="text/plain",
        )
    except aws.AwsError as error:
        return error
    try:
        aws.s3_delete_object(region=region, bucket=bucket, key=key)
    except aws.AwsError as error:
        return f"The dashboard wrote s3://{bucket}/{key} but cannot delete it ({error.code}); delete it by hand."
    return ""


def _s3_check_failed(
    name: str, verb: str, uri: str, error: aws.AwsError
) -> CheckResult:
    if isinstance(error, aws.AccessDenied):
        return CheckResult(
            name, False, f"The dashboard cannot {verb} {uri}: {error.code}."
        )
    if isinstance(error, aws.NotFound):
        bucket, _ = split_s3_uri(uri)
        return CheckResult(
            name, False, f"Bucket “{bucket}” does not exist ({error.code})."
        )
    return CheckResult(name, False, f"S3 did not answer: {error}")
