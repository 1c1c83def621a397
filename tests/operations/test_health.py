"""/healthz and /readyz: no login, JSON naming each probe, 503 when the database or the broker is away."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.utils import timezone
from kombu import Connection

from imports.models import Heartbeat
from imports.operations import health

# The probes run in threads of their own, with connections of their own: they see committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker nobody listens on, a Redis URL on a closed port, for the connection the probe opens.

    Only the probe's connection is pointed there: the app's configuration and pools stay as they are, so the
    tests after this one still reach the real broker (kombu keeps pools in a process-wide registry, and
    Celery reads CELERY_BROKER_URL from the environment before its own setting).
    """
    dead = "redis://127.0.0.1:9/0"
    monkeypatch.setattr(
        current_app,
        "connection_for_write",
        lambda *args, **kwargs: Connection(dead, transport="redis"),
    )


def test_healthz_needs_no_login_and_names_each_probe(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "beat": "no heartbeat yet",  # reported, but beat alone does not fail the check
    }
    assert (
        "no-store" in response["Cache-Control"]
        or "no-cache" in response["Cache-Control"]
    )


def test_beat_is_ok_with_a_fresh_heartbeat_and_stale_with_an_old_one(
    client: Client, settings: Any
) -> None:
    health.beat_heartbeat()
    assert client.get("/healthz").json()["beat"] == "ok"
    Heartbeat.objects.filter(name=health.BEAT).update(
        at=timezone.now() - timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_S + 30)
    )
    stale = client.get("/healthz")
    assert stale.status_code == 200
    assert stale.json()["beat"].startswith("last heartbeat ")


def test_healthz_answers_503_when_the_broker_is_unreachable(
    client: Client, broker_away: None
) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "ok"
    assert body["broker"].startswith("unreachable (")
    assert (
        "127.0.0.1" not in response.content.decode()
    )  # no address, no URL in a public answer


def test_readyz_adds_migrations_and_fails_while_one_is_not_applied(
    client: Client,
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["migrations"] == "ok"
    # One step back from the latest migration, whichever it is.
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    (leaf,) = [node for node in graph.leaf_nodes() if node[0] == "imports"]
    (previous,) = graph.node_map[leaf].parents
    call_command("migrate", "imports", previous.key[1], verbosity=0)
    try:
        pending = client.get("/readyz")
        assert pending.status_code == 503
        assert pending.json()["migrations"] == "1 migration not applied"
        assert client.get("/healthz").status_code == 200  # alive, only not ready
    finally:
        call_command("migrate", "imports", verbosity=0)


def test_a_probe_that_hangs_is_answered_by_its_timeout(settings: Any) -> None:
    settings.HEALTH_PROBE_TIMEOUT_S = 0.2

    def stuck() -> str:
        time.sleep(2)
        return "ok"

    answers = health._run({"stuck": stuck, "quick": lambda: "ok"})
    assert answers == {"stuck": "no answer within 0.2 s", "quick": "ok"}


def test_healthz_takes_get_only(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
