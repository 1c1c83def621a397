"""Sessions in a shared cache survive the cache going away (config/sessions.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.test import Client

# Nothing listens on port 1: every cache call is refused at once, as with Redis stopped.
REDIS_AWAY = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
}


@pytest.fixture
def cache_away(settings: Any) -> None:
    settings.CACHES = (
        REDIS_AWAY  # Django's setting_changed handler rebuilds the cache handler
    )


def test_djangos_own_cached_db_fails_while_the_cache_is_away(
    settings: Any, cache_away: None, bob: User
) -> None:
    """The failing case this store exists for: even signing in fails."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    with pytest.raises(redis.exceptions.ConnectionError):
        Client().force_login(bob)


def test_pages_and_sign_out_work_from_the_database_while_the_cache_is_away(
    settings: Any, cache_away: None, bob: User
) -> None:
    settings.SESSION_ENGINE = "config.sessions"
    client = Client(raise_request_exception=True)
    client.force_login(bob)
    assert client.get("/jobs/").status_code == 200
    assert Session.objects.count() == 1
    client.post("/accounts/logout/")
    assert Session.objects.count() == 0
    assert client.get("/jobs/").status_code == 302


def test_with_the_cache_up_the_session_is_read_through_it(
    settings: Any, bob: User
) -> None:
    settings.SESSION_ENGINE = "config.sessions"
    client = Client()
    client.force_login(bob)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    cached = caches["default"].get("django.contrib.sessions.cached_db" + key)
    assert cached is not None
    assert cached["_auth_user_id"] == str(bob.pk)
    Session.objects.all().delete()  # the cache alone answers now
    assert client.get("/jobs/").status_code == 200
