"""The chain's canonical form did not move when the code did: `verify_audit` passes on a database made before.

The hashes below were computed by the audit chain as it stood before `imports/` was grouped into packages
(commit 049fe7b, `imports/auditchain.py`). If the canonical JSON, the hashed fields or the target labels change,
every event recorded by an installed dashboard stops verifying, so these values must never be regenerated.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.db.models import Model

from imports.audit import chain
from imports.models import Datastore, ImportDraft, ImportJob, Scan

FIELDS = {
    "created_at": datetime(
        2026, 11, 29, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=1))
    ),
    "actor_id": 3,
    "actor_username": "alice",
    "action": "job.submitted",
    "target_type": "imports.importjob",
    "target_id": "42",
    "summary": "Submitted job 42 “Ünïcode”",
    "details": {"n": 1e16, "f": 0.5, "s": "a\x00b", "l": [1, 2.0, None, True]},
    "ip": "10.0.0.1",
    "user_agent": "Mozilla/5.0",
}
FIRST_HASH = "24fc063926c794c4ca8330fad717eb699c8e70ce43fcc3e57820e1d8653a29e3"
SECOND_HASH = "5a585c92a8d66a745c3a5960cb917487a05518049efe098b183e4d3e8c1fe9fc"


def test_an_event_hashes_as_it_did_before_the_move() -> None:
    first = chain.event_hash(previous_hash=chain.GENESIS, fields=FIELDS)
    second = chain.event_hash(
        previous_hash=first, fields={**FIELDS, "action": "job.cancelled", "details": {}}
    )
    assert (first, second) == (FIRST_HASH, SECOND_HASH)


def test_any_change_to_a_hashed_field_changes_the_hash() -> None:
    for name, value in [
        ("target_type", "imports.jobs.importjob"),
        ("summary", "Submitted job 43"),
    ]:
        changed = chain.event_hash(
            previous_hash=chain.GENESIS, fields={**FIELDS, name: value}
        )
        assert changed != FIRST_HASH, name


@pytest.mark.parametrize(
    ("model", "label"),
    [
        (Datastore, "imports.datastore"),
        (Scan, "imports.scan"),
        (ImportDraft, "imports.importdraft"),
        (ImportJob, "imports.importjob"),
    ],
)
def test_targets_keep_the_labels_recorded_before_the_move(
    model: type[Model], label: str
) -> None:
    """`audit_record` hashes `target._meta.label_lower`: the app label and model names must stay."""
    assert model._meta.label_lower == label
