"""The authentication backend: the signed-in user and its permissions in one query, nothing kept longer."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User

from config.auth import OneQueryModelBackend
from imports.roles import OPERATOR

pytestmark = pytest.mark.django_db

backend = OneQueryModelBackend()


def _perm(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="imports", codename=codename)


def test_it_loads_the_user_and_every_permission_in_one_query(
    alice: User, django_assert_num_queries: Any
) -> None:
    alice.user_permissions.add(_perm("delete_scan"))
    with django_assert_num_queries(1):
        user = backend.get_user(alice.pk)
        assert user is not None
        # Through the Operator group, directly, and one the user does not hold.
        assert user.has_perm("imports.import_to_datastore")
        assert user.has_perm("imports.delete_scan")
        assert not user.has_perm("imports.delete_importjob")
        assert user.has_module_perms("imports")
    assert user.username == "alice"
    assert user.is_active is True
    assert (
        user.get_all_permissions()
        == User.objects.get(pk=alice.pk).get_all_permissions()
    )


def test_a_user_without_permissions_has_none(nobody: User) -> None:
    user = backend.get_user(nobody.pk)
    assert user is not None
    assert user.get_all_permissions() == set()
    assert not user.has_perm("imports.view_importjob")


def test_a_role_taken_away_applies_from_the_next_request(alice: User) -> None:
    before = backend.get_user(alice.pk)
    assert before is not None
    assert before.has_perm("imports.import_to_datastore")
    alice.groups.remove(Group.objects.get(name=OPERATOR))
    after = backend.get_user(alice.pk)
    assert after is not None
    assert not after.has_perm("imports.import_to_datastore")


def test_a_permission_granted_to_the_group_applies_from_the_next_request(
    bob: User,
) -> None:
    assert not backend.get_user(bob.pk).has_perm("imports.reveal_phi")  # type: ignore[union-attr]
    bob.groups.get().permissions.add(_perm("reveal_phi"))
    assert backend.get_user(bob.pk).has_perm("imports.reveal_phi")  # type: ignore[union-attr]


def test_an_inactive_user_is_signed_out(alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert backend.get_user(alice.pk) is None


def test_a_superuser_holds_every_permission(db: None) -> None:
    root = User.objects.create_superuser("root", "root@example.org", "x" * 20)
    user = backend.get_user(root.pk)
    assert user is not None
    assert user.has_perm("imports.delete_importjob")
    assert user.has_perm("auth.change_user")


@pytest.mark.parametrize("user_id", [987654321, "not a number"])
def test_an_unknown_or_malformed_id_finds_nobody(db: None, user_id: Any) -> None:
    assert backend.get_user(user_id) is None
