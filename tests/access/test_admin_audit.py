"""Accounts and roles changed in the admin: the audit trail records what changed, before and after."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from imports.models import AuditEvent

pytestmark = pytest.mark.django_db


def _user_form(user: User, **fields: Any) -> dict[str, Any]:
    form = {
        "username": user.username,
        "email": user.email,
        "groups": list(user.groups.values_list("pk", flat=True)),
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    if user.is_active:
        form["is_active"] = "on"
    form.update(fields)
    return form


def test_making_a_user_superuser_records_the_flags_before_and_after(
    client_carol: Client, bob: User
) -> None:
    response = client_carol.post(
        f"/admin/auth/user/{bob.pk}/change/",
        _user_form(bob, is_superuser="on", is_staff="on"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_CHANGED)
    assert event.details["changes"] == {
        "is_staff": {"before": False, "after": True},
        "is_superuser": {"before": False, "after": True},
    }
    assert "is_superuser False → True" in event.summary
    assert "password" not in str(event.details)


def test_a_group_change_records_the_groups_before_and_after(
    client_carol: Client, bob: User
) -> None:
    operator = Group.objects.get(name="Operator")
    client_carol.post(
        f"/admin/auth/user/{bob.pk}/change/", _user_form(bob, groups=[operator.pk])
    )
    event = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_CHANGED)
    assert event.details["changes"] == {
        "groups": {"before": ["Viewer"], "after": ["Operator"]}
    }
    assert "groups Viewer → Operator" in event.summary


def test_saving_a_user_unchanged_records_no_changes(
    client_carol: Client, bob: User
) -> None:
    client_carol.post(f"/admin/auth/user/{bob.pk}/change/", _user_form(bob))
    for event in AuditEvent.objects.filter(action=AuditEvent.Action.ACCOUNT_CHANGED):
        assert event.details["changes"] == {}


def test_a_roles_permissions_are_recorded_before_and_after(
    client_carol: Client,
) -> None:
    viewer = Group.objects.get(name="Viewer")
    before = sorted(
        f"{p.content_type.app_label}.{p.codename}" for p in viewer.permissions.all()
    )
    added = Permission.objects.get(
        content_type__app_label="auth", codename="change_user"
    )
    response = client_carol.post(
        f"/admin/auth/group/{viewer.pk}/change/",
        {
            "name": "Viewer",
            "permissions": [*viewer.permissions.values_list("pk", flat=True), added.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_CHANGED)
    assert event.details["changes"] == {
        "permissions": {
            "before": before,
            "after": sorted([*before, "auth.change_user"]),
        }
    }


def test_deleting_a_user_records_what_they_had(client_carol: Client, bob: User) -> None:
    client_carol.post(f"/admin/auth/user/{bob.pk}/delete/", {"post": "yes"})
    event = AuditEvent.objects.get(action=AuditEvent.Action.ACCOUNT_DELETED)
    assert event.details["before"]["groups"] == ["Viewer"]
    assert event.details["before"]["is_superuser"] is False
