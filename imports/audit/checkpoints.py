"""Checkpoints: the trail's head (event id, its place in the chain, its hash, the time), signed with the audit key.

The keyed hash chain finds an event edited, inserted or removed in the middle, but not the last events
removed, nor the whole table emptied: what is left is still a whole chain. A checkpoint written
somewhere the database's owner cannot rewrite (the log, an S3 object) remembers how far the chain
reached; `verify_audit --checkpoints` fails when a checkpointed event is gone or hashes differently.

The signature is HMAC-SHA256 with the audit key over the checkpoint's canonical JSON, so a checkpoint
cannot be forged or moved by whoever can write the log or the bucket but does not hold the key. The
signed text starts with "audit-checkpoint" and a newline, which no event's canonical JSON does, so a
checkpoint's signature is never a valid event hash, nor the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from imports.audit.chain import HASHED_FIELDS, canonical_time, event_hash
from imports.audit.keys import audit_key
from imports.models import AuditEvent

KIND = "audit-checkpoint"


class CheckpointError(Exception):
    """A checkpoint could not be written or read; the message says which and why."""


@dataclass(frozen=True)
class Checkpoint:
    event_id: int
    # How many events the chain held up to and including `event_id`.
    events: int
    hash: str
    at: datetime
    signature: str

    def label(self) -> str:
        return f"the checkpoint of {canonical_time(self.at)} (event {self.event_id})"

    def to_json(self) -> str:
        return json.dumps(
            {**_signed_fields(self), "signature": self.signature},
            sort_keys=True,
            separators=(",", ":"),
        )


def _signed_fields(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "kind": KIND,
        "event_id": checkpoint.event_id,
        "events": checkpoint.events,
        "hash": checkpoint.hash,
        "at": canonical_time(checkpoint.at),
    }


def _signature(key: bytes, checkpoint: Checkpoint) -> str:
    text = KIND + "\n" + json.dumps(_signed_fields(checkpoint), sort_keys=True)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def checkpoint_sign(
    *, key: bytes, event_id: int, events: int, hash: str, at: datetime
) -> Checkpoint:
    unsigned = Checkpoint(event_id, events, hash, at, signature="")
    return Checkpoint(event_id, events, hash, at, _signature(key, unsigned))


def checkpoint_take() -> Checkpoint | None:
    """A signed checkpoint of the trail's head now; None while the trail is empty.

    Refused when the head's content does not match its keyed hash: a checkpoint would vouch for it.
    """
    head = (
        AuditEvent.objects.order_by("-id")
        .values("id", *HASHED_FIELDS, "previous_hash", "hash")
        .first()
    )
    if head is None:
        return None
    key = audit_key()
    if (
        event_hash(key=key, previous_hash=head["previous_hash"], fields=head)
        != head["hash"]
    ):
        raise CheckpointError(
            f"Not checkpointing: the last event, {head['id']}, no longer matches its hash "
            "(run manage.py verify_audit)."
        )
    events = AuditEvent.objects.filter(id__lte=head["id"]).count()
    return checkpoint_sign(
        key=key,
        event_id=head["id"],
        events=events,
        hash=head["hash"],
        at=timezone.now(),
    )


def checkpoints_parse(lines: Iterable[str], *, source: str) -> list[Checkpoint]:
    """The checkpoints in `lines` (a file of them, or a log that holds them among other lines).

    A line that names no checkpoint is skipped; one that does must parse and carry a valid signature.
    """
    key = audit_key()
    found = []
    marker = KIND + " {"
    for number, line in enumerate(lines, start=1):
        # A log line carries `audit-checkpoint {...}`; a checkpoint object or a file of them, the JSON alone.
        # Anything else (beat's "Sending due task ...", the worker's lines) is skipped.
        if marker in line:
            text = line[line.index(marker) + len(KIND) + 1 :]
        elif line.lstrip().startswith("{") and KIND in line:
            text = line
        else:
            continue
        where = f"{source}, line {number}"
        try:
            data = json.loads(text)
            checkpoint = Checkpoint(
                event_id=int(data["event_id"]),
                events=int(data["events"]),
                hash=str(data["hash"]),
                at=datetime.fromisoformat(str(data["at"])),
                signature=str(data["signature"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{where} is not a checkpoint ({error})") from error
        if data.get("kind") != KIND:
            raise CheckpointError(
                f"{where} is not a checkpoint (kind {data.get('kind')!r})"
            )
        if not hmac.compare_digest(_signature(key, checkpoint), checkpoint.signature):
            raise CheckpointError(
                f"{where}: {checkpoint.label()} is not signed with this dashboard's audit key "
                "(forged, altered, or written under another DJANGO_AUDIT_KEY)"
            )
        found.append(checkpoint)
    if not found:
        raise CheckpointError(f"{source} holds no checkpoint")
    return found
