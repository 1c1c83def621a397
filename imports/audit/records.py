"""The audit trail: one function records an event; everything that changes state calls it.

Events are append-only (AuditEvent's queryset, the admin and database triggers refuse changes) and
chained by hash (imports/audit/chain.py); `audit_verify` walks the chain for `manage.py verify_audit`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.cache import cache
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from imports.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    RECORDED_FIELDS,
    canonical_json_value,
    event_hash,
)
from imports.audit.checkpoints import Checkpoint
from imports.audit.guard import chain_lock, guards_missing, guards_weakened
from imports.audit.keys import audit_key
from imports.models import AuditEvent

# Who did something: a signed-in user, or nobody (the CLI, a beat task) recorded as "system".
Actor = AbstractBaseUser | AnonymousUser | None

USER_AGENT_MAX = 512


# --- Where a request came from ----------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    ip: str
    user_agent: str


# Set for the duration of each web request by config.middleware.AuditOriginMiddleware. A context
# variable rather than a `request=` argument on every service: services are called with
# `actor=request.user` only, and threading the request through each of them (and the auth
# signals, and the admin) would touch every caller for a value none of them uses. The Celery
# worker and the CLI never set it, so their events carry no IP and no user agent.
_origin: ContextVar[Origin | None] = ContextVar("audit_origin", default=None)


def client_ip(request: HttpRequest) -> str:
    """The address of whoever sent `request`, or "" when it is not an IP address.

    REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT proxies are in front: then the address the
    outermost of them saw, counted from the right of X-Forwarded-For. Each proxy appends the
    address it received the request from, so the entries further left were written by the client
    and prove nothing.
    """
    address = str(request.META.get("REMOTE_ADDR", ""))
    hops = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
    if hops > 0:
        forwarded = [
            hop.strip()
            for hop in str(request.headers.get("x-forwarded-for", "")).split(",")
            if hop.strip()
        ]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


@contextmanager
def request_origin(request: HttpRequest) -> Iterator[None]:
    """Attribute the audit events recorded inside the block to `request`'s IP and user agent."""
    user_agent = _text(str(request.headers.get("user-agent", "")))[:USER_AGENT_MAX]
    token = _origin.set(Origin(ip=client_ip(request), user_agent=user_agent))
    try:
        yield
    finally:
        _origin.reset(token)


# --- Recording ----------------------------------------------------------------------------------


def audit_record(
    *,
    actor: Actor,
    action: AuditEvent.Action,
    summary: str,
    target: models.Model | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an event. `summary` is shown to every viewer, so it must not carry patient data."""
    user = actor if isinstance(actor, User) else None
    origin = _origin.get()
    event = AuditEvent(
        actor=user,
        actor_username=_text(user.get_username()) if user is not None else "system",
        action=str(action),
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk)[:64] if target is not None else "",
        summary=_text(summary)[:500],
        # Stored in the form it reads back in, so that what is stored is what was hashed.
        details=canonical_json_value(dict(details or {})),
        ip=origin.ip if origin else "",
        user_agent=origin.user_agent if origin else "",
    )
    with transaction.atomic():
        chain_lock(connection)
        # Read under the lock, and timed after it, so the chain's order is the order of time.
        event.created_at = timezone.now()
        event.previous_hash = (
            AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
            or GENESIS
        )
        event.hash = event_hash(
            key=audit_key(),
            previous_hash=event.previous_hash,
            fields={name: getattr(event, name) for name in HASHED_FIELDS},
        )
        event.save()
    return event


def _text(value: str) -> str:
    # PostgreSQL refuses NUL in text columns; a hostile user agent must not make an event fail.
    return value.replace("\x00", "")


def export_record(
    *,
    actor: Actor,
    what: str,
    export_format: str,
    filters: Mapping[str, Any] | None = None,
    target: models.Model | None = None,
) -> None:
    """Record that `actor` downloaded `what` ("the objects of scan 3"): the filters, not the rows."""
    chosen = {
        name: value.isoformat() if isinstance(value, date | datetime) else value
        for name, value in (filters or {}).items()
        if value not in ("", None, [], False)
    }
    audit_record(
        actor=actor,
        action=AuditEvent.Action.EXPORTED,
        target=target,
        summary=f"Exported {what} as {export_format.upper()}"
        + (f" ({', '.join(sorted(chosen))} filtered)" if chosen else ""),
        details={"export": what, "format": export_format, "filters": chosen},
    )


# --- Patient data ---------------------------------------------------------------------------


def phi_reveal(*, actor: Actor, target: models.Model, where: str) -> None:
    """Record that `actor` looked at unmasked patient names and IDs (`where`: "the scan of s3://…")."""
    audit_record(
        actor=actor,
        action=AuditEvent.Action.PHI_REVEALED,
        target=target,
        summary=f"Revealed patient names and IDs in {where}",
    )


# --- Sign-ins, connected in ImportsConfig.ready() -------------------------------------------


def on_user_logged_in(
    sender: object, request: object, user: AbstractBaseUser, **kwargs: Any
) -> None:
    audit_record(actor=user, action=AuditEvent.Action.SIGNED_IN, summary="Signed in")


def on_user_logged_out(
    sender: object, request: object, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is not None:
        audit_record(
            actor=user, action=AuditEvent.Action.SIGNED_OUT, summary="Signed out"
        )


# A failed sign-in under a name no account has is recorded at most once per address and window:
# anyone can send such names, and each would otherwise add a row. The attempts in between are counted
# in the cache and reported by the next such event from that address (rows cannot be updated).
UNKNOWN_NAME_WINDOW_S = 60
# How long a count waits for the next event from its address before it is forgotten.
UNKNOWN_NAME_COUNT_TTL_S = 24 * 3600


def on_user_login_failed(
    sender: object, credentials: dict[str, Any], request: object = None, **kwargs: Any
) -> None:
    # An attempt refused by the lockout (django-axes, config/auth_backends.py) checked no password:
    # recording each one would let anyone write rows without limit. The failures that led to it are recorded.
    if getattr(request, "sign_in_refused_by_lockout", False):
        return
    # Django has already replaced the password in `credentials` with stars. The name is shown only
    # when it is an account's: anything else may be a password typed into the wrong field.
    username = _text(str(credentials.get("username", "")))[:150]
    user_model = get_user_model()
    if user_model._default_manager.filter(
        **{user_model.USERNAME_FIELD: username}
    ).exists():
        # Known names stay one event per attempt: the lockout bounds them per name and address.
        audit_record(
            actor=None,
            action=AuditEvent.Action.SIGN_IN_FAILED,
            summary=f"Failed sign-in as “{username}”",
            details={"username": username},
        )
        return
    _record_unknown_name_failure()


def _record_unknown_name_failure() -> None:
    origin = _origin.get()
    source = origin.ip if origin else ""
    window_key = f"audit:sign-in-unknown:window:{source}"
    count_key = f"audit:sign-in-unknown:held:{source}"
    if not cache.add(window_key, 1, timeout=UNKNOWN_NAME_WINDOW_S):
        # Inside the window: counted, not recorded.
        if not cache.add(count_key, 1, timeout=UNKNOWN_NAME_COUNT_TTL_S):
            try:
                cache.incr(count_key)
            except ValueError:  # expired between add() and incr()
                cache.set(count_key, 1, timeout=UNKNOWN_NAME_COUNT_TTL_S)
        return
    held = int(cache.get(count_key) or 0)
    if held:
        # decr, not delete: attempts counted meanwhile by another process stay counted.
        with suppress(ValueError):
            cache.decr(count_key, held)
    summary = "Failed sign-in for an unknown user name"
    if held:
        summary += (
            f" (and {held} more from this address since the last such event, "
            f"not recorded one by one)"
        )
    audit_record(
        actor=None,
        action=AuditEvent.Action.SIGN_IN_FAILED,
        summary=summary,
        details={
            "unknown_username": True,
            "attempts": held + 1,
            "window_s": UNKNOWN_NAME_WINDOW_S,
        },
    )


# --- Verifying the chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    created_at: datetime
    problems: list[str]

    def id_and_time(self) -> str:
        return f"{self.event_id} ({self.created_at.isoformat(timespec='seconds')})"


@dataclass(frozen=True)
class ChainReport:
    events: int
    last_hash: str
    broken: BrokenLink | None
    missing_triggers: list[str] = field(default_factory=list)
    # A maintenance bypass found outside test settings (imports.audit.guard.guards_weakened).
    weakened_guards: list[str] = field(default_factory=list)
    # Each checkpoint the trail no longer agrees with, in words naming it.
    checkpoint_problems: list[str] = field(default_factory=list)
    last_id: int | None = None


def audit_verify(*, checkpoints: Iterable[Checkpoint] = ()) -> ChainReport:
    """Recompute the keyed chain from the first event; stop at the first event that does not fit.

    Each of `checkpoints` must name an event still in the chain, with the hash and the place it had.
    """
    key = audit_key()
    expected: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        expected.setdefault(checkpoint.event_id, []).append(checkpoint)
    checkpoint_problems: list[tuple[datetime, str]] = []
    expected_previous, previous_id, count = GENESIS, None, 0
    rows = (
        AuditEvent.objects.order_by("id")
        .values(*RECORDED_FIELDS)
        .iterator(chunk_size=2000)
    )
    broken = None
    for row in rows:
        count += 1
        problems = []
        recomputed = event_hash(key=key, previous_hash=row["previous_hash"], fields=row)
        if recomputed != row["hash"]:
            problems.append(
                "its content no longer matches its hash: a field was changed after it was "
                f"written, or the hash was recomputed without the audit key (stored hash "
                f"{row['hash'][:16]}…, content hashes to {recomputed[:16]}…)"
            )
        if row["previous_hash"] != expected_previous:
            before = (
                "the start of the trail"
                if previous_id is None
                else f"event {previous_id}, whose hash is {expected_previous[:16]}…"
            )
            problems.append(
                f"it names {row['previous_hash'][:16]}… as the previous hash but follows "
                f"{before}: an event before it was removed or inserted, or the previous event "
                "was rewritten together with its hash"
            )
        if problems:
            broken = BrokenLink(row["id"], row["created_at"], problems)
            break
        for checkpoint in expected.pop(row["id"], []):
            if checkpoint.hash != row["hash"]:
                checkpoint_problems.append(
                    (
                        checkpoint.at,
                        f"{checkpoint.label()} recorded the hash {checkpoint.hash[:16]}… for "
                        f"event {row['id']}, which now has {row['hash'][:16]}…",
                    )
                )
            elif checkpoint.events != count:
                checkpoint_problems.append(
                    (
                        checkpoint.at,
                        f"{checkpoint.label()} counted {checkpoint.events} event(s) up to event "
                        f"{row['id']}; the trail now holds {count}",
                    )
                )
        expected_previous, previous_id = row["hash"], row["id"]
    if broken is None:
        end = (
            "the trail is empty"
            if previous_id is None
            else f"the trail now ends at event {previous_id}"
        )
        for checkpoint in (c for group in expected.values() for c in group):
            checkpoint_problems.append(
                (
                    checkpoint.at,
                    f"{checkpoint.label()} names event {checkpoint.event_id} as the trail's "
                    f"head with {checkpoint.events} event(s), but {end} ({count} event(s)): "
                    "the chain is shorter than the checkpoint, events were removed from its end",
                )
            )
    return ChainReport(
        events=count,
        last_hash=expected_previous,
        broken=broken,
        missing_triggers=guards_missing(connection),
        weakened_guards=guards_weakened(connection),
        checkpoint_problems=[problem for _, problem in sorted(checkpoint_problems)],
        last_id=previous_id,
    )
