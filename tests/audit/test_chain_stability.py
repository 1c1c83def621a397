"""The chain's canonical form did not move when the code did: `verify_audit` passes on a database made before.

The unkeyed hashes below were computed by the audit chain as it stood before `imports/` was grouped into
packages (commit 049fe7b, `imports/auditchain.py`). If the canonical JSON, the hashed fields or the target
labels change, every event recorded by an installed dashboard stops verifying, so these values must never
be regenerated. Since migration 0026 events are hashed with HMAC-SHA256 under DJANGO_AUDIT_KEY; that
migration still checks the old chain with the unkeyed hash before re-hashing it, so both are pinned: the
unkeyed values as they were (the function was renamed `unkeyed_event_hash`), the keyed ones as first
computed under the fixed test key (tests/settings.py), over the same canonical JSON.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

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
TEST_KEY = b"tests-only-audit-key-not-a-secret-0123456789"
FIRST_KEYED_HASH = "b96c865e4c2a7dfdc44d78303dd3b132b318362afe8d75e0418cc109f16f7f34"
SECOND_KEYED_HASH = "41d1c58d89aace9578938384fc132d15a54506996b89d275a7ac185704af314f"


def test_an_event_hashes_as_it_did_before_the_move() -> None:
    first = chain.unkeyed_event_hash(previous_hash=chain.GENESIS, fields=FIELDS)
    second = chain.unkeyed_event_hash(
        previous_hash=first, fields={**FIELDS, "action": "job.cancelled", "details": {}}
    )
    assert (first, second) == (FIRST_HASH, SECOND_HASH)


def test_an_event_hashes_with_the_key_as_it_did_when_the_key_came() -> None:
    first = chain.event_hash(key=TEST_KEY, previous_hash=chain.GENESIS, fields=FIELDS)
    second = chain.event_hash(
        key=TEST_KEY,
        previous_hash=first,
        fields={**FIELDS, "action": "job.cancelled", "details": {}},
    )
    assert (first, second) == (FIRST_KEYED_HASH, SECOND_KEYED_HASH)


def test_the_keyed_hash_depends_on_the_key() -> None:
    other = chain.event_hash(
        key=b"another-key-of-the-same-length-0123456789ab",
        previous_hash=chain.GENESIS,
        fields=FIELDS,
    )
    assert other not in (FIRST_KEYED_HASH, FIRST_HASH)


def test_the_test_settings_hold_the_pinned_key(settings: Any) -> None:
    assert settings.AUDIT_KEY.encode() == TEST_KEY


def test_any_change_to_a_hashed_field_changes_the_hash() -> None:
    for name, value in [
        ("target_type", "imports.jobs.importjob"),
        ("summary", "Submitted job 43"),
    ]:
        changed = chain.event_hash(
            key=TEST_KEY, previous_hash=chain.GENESIS, fields={**FIELDS, name: value}
        )
        assert changed != FIRST_KEYED_HASH, name


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
