"""Writing the audit trail's checkpoints where the database's owner cannot rewrite them, and reading them back.

Beat sends `imports.audit_checkpoint` every AUDIT_CHECKPOINT_EVERY_S. Each checkpoint
(imports/audit/checkpoints.py) is logged as one line, `audit-checkpoint {...}`, so whatever keeps the
logs keeps the checkpoints; when AUDIT_CHECKPOINT_S3_URI names a prefix, it is also written there as an
object of its own, with If-None-Match so no checkpoint is ever overwritten (a bucket with versioning or
Object Lock, and a writer role without s3:DeleteObject, keep them from the dashboard's own hosts too).

`manage.py verify_audit --checkpoints FILE|s3://bucket/prefix/` reads them back.
"""

from __future__ import annotations

import logging

from django.conf import settings

from imports.audit.checkpoints import (
    KIND,
    Checkpoint,
    CheckpointError,
    checkpoint_take,
    checkpoints_parse,
)
from imports.aws import client as aws
from imports.validators import split_s3_uri

logger = logging.getLogger(__name__)

# One checkpoint is about 250 bytes; anything much larger under the prefix is not one.
CHECKPOINT_MAX_BYTES = 64 * 1024


def _prefix(uri: str) -> tuple[str, str]:
    bucket, prefix = split_s3_uri(uri)
    if not uri.startswith("s3://") or not bucket:
        raise CheckpointError(f"“{uri}” is not an S3 URI (s3://bucket/prefix/)")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def checkpoint_object_key(prefix: str, checkpoint: Checkpoint) -> str:
    # Sorted by name is sorted by time; the event id makes two checkpoints in one microsecond distinct.
    return f"{prefix}{checkpoint.at:%Y%m%dT%H%M%S%fZ}-{checkpoint.event_id}.json"


def audit_checkpoint_write() -> Checkpoint | None:
    """Checkpoint the trail's head now: to the log, and to S3 when a prefix is set. None if nothing was written."""
    try:
        checkpoint = checkpoint_take()
    except CheckpointError as error:
        logger.error("%s", error)
        return None
    if checkpoint is None:
        logger.warning("No audit checkpoint written: the audit trail is empty")
        return None
    logger.info("%s %s", KIND, checkpoint.to_json())
    uri = str(settings.AUDIT_CHECKPOINT_S3_URI)
    if uri:
        bucket, prefix = _prefix(uri)
        try:
            aws.s3_put_object(
                region=settings.AWS_DEFAULT_REGION,
                bucket=bucket,
                key=checkpoint_object_key(prefix, checkpoint),
                body=(checkpoint.to_json() + "\n").encode(),
                content_type="application/json",
                if_none_match=True,
            )
        except aws.AwsError as error:
            # The log line above still holds it; the next run writes the next one.
            logger.error(
                "The audit checkpoint of event %s was logged but not written to S3 bucket %s: %s",
                checkpoint.event_id,
                bucket,
                error,
            )
    return checkpoint


def checkpoints_read_s3(uri: str) -> list[Checkpoint]:
    """Every checkpoint under the prefix `uri`, oldest first."""
    bucket, prefix = _prefix(uri)
    region = settings.AWS_DEFAULT_REGION
    found: list[Checkpoint] = []
    token = None
    try:
        while True:
            page = aws.s3_list_page(
                region=region, bucket=bucket, prefix=prefix, delimiter=None, token=token
            )
            for item in page.objects:
                body = aws.s3_read_object(
                    region=region,
                    bucket=bucket,
                    key=item.key,
                    max_bytes=CHECKPOINT_MAX_BYTES,
                )
                found.extend(
                    checkpoints_parse(
                        body.decode("utf-8", errors="replace").splitlines(),
                        source=f"s3://{bucket}/{item.key}",
                    )
                )
            token = page.next_token
            if token is None:
                break
    except aws.AwsError as error:
        raise CheckpointError(
            f"Reading the checkpoints under {uri}: {error}"
        ) from error
    if not found:
        raise CheckpointError(f"{uri} holds no checkpoint")
    return sorted(found, key=lambda checkpoint: checkpoint.at)
