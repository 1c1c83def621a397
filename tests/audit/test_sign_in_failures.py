"""Failed sign-ins in the audit trail: a name no account has is never shown, and such failures are recorded
at most once per address and window, the attempts in between counted into the next event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from imports.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.7"


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _sign_in(username: str, password: str, address: str = ADDRESS) -> None:
    Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def _failures() -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=AuditEvent.Action.SIGN_IN_FAILED).order_by(
            "id"
        )
    )


def _window_ends(address: str = ADDRESS) -> None:
    cache.delete(f"audit:sign-in-unknown:window:{address}")


def test_a_password_typed_as_the_user_name_is_not_recorded(db: None) -> None:
    _sign_in("Winter2026!", "alice")
    (event,) = _failures()
    assert event.summary == "Failed sign-in for an unknown user name"
    assert "Winter2026" not in event.summary
    assert "Winter2026" not in str(event.details)
    assert event.ip == ADDRESS


def test_a_failed_sign_in_to_a_known_account_names_it(alice: User) -> None:
    _sign_in("alice", "wrong")
    (event,) = _failures()
    assert event.summary == "Failed sign-in as “alice”"
    assert event.details == {"username": "alice"}


def test_unknown_names_from_one_address_write_one_event_per_window(
    alice: User,
) -> None:
    for n in range(10):
        _sign_in(f"guess-{n}", "x")
    assert len(_failures()) == 1
    # Real events are not buried: a known account's failure and a sign-in are still recorded.
    _sign_in("alice", "wrong")
    _sign_in("alice", PASSWORD)
    assert [e.summary for e in _failures()][-1] == "Failed sign-in as “alice”"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SIGNED_IN).count() == 1


def test_the_attempts_held_back_are_counted_in_the_next_event(db: None) -> None:
    for n in range(10):
        _sign_in(f"guess-{n}", "x")
    _window_ends()
    _sign_in("guess-10", "x")
    first, second = _failures()
    assert first.details["attempts"] == 1
    assert second.details["attempts"] == 10  # the 9 held back, and this one
    assert second.summary == (
        "Failed sign-in for an unknown user name (and 9 more from this address since the "
        "last such event, not recorded one by one)"
    )
    _window_ends()
    _sign_in("guess-11", "x")
    assert _failures()[-1].details["attempts"] == 1  # counted once only


def test_each_address_has_its_own_window(db: None) -> None:
    _sign_in("guess-a", "x", address="198.51.100.1")
    _sign_in("guess-b", "x", address="198.51.100.2")
    _sign_in("guess-c", "x", address="198.51.100.2")
    assert sorted(e.ip for e in _failures()) == ["198.51.100.1", "198.51.100.2"]
