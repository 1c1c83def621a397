"""The audit trail: one function records an event; everything that changes state calls it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import models

from imports.models import AuditEvent

# Who did something: a signed-in user, or nobody (the CLI, a beat task) recorded as "system".
Actor = AbstractBaseUser | AnonymousUser | None


def audit_record(
    *,
    actor: Actor,
    action: AuditEvent.Action,
    summary: str,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event. `summary` is shown to every viewer, so it must not carry patient data."""
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_username=user.get_username() if user is not None else "system",
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        summary=summary[:500],
        details=details or {},
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


def on_user_login_failed(
    sender: object, credentials: dict[str, Any], request: object = None, **kwargs: Any
) -> None:
    # An attempt refused by the lockout (django-axes, config/auth_backends.py) checked no password:
    # recording each one would let anyone write rows without limit. The failures that led to it are recorded.
    if getattr(request, "sign_in_refused_by_lockout", False):
        return
    # Django has already replaced the password in `credentials` with stars; only the name is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        actor=None,
        action=AuditEvent.Action.SIGN_IN_FAILED,
        summary=f"Failed sign-in as “{username}”",
        details={"username": username},
    )
