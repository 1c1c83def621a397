"""Sessions read through the shared cache, and from the database alone while the cache is away.

Django's `cached_db` store already survives a failed cache write, but not a failed read-back after a database
load, an `exists()` or a `delete()`: with the sessions in the same Redis as the broker, a Redis outage turned every
page into a 500, confirming an import included. Here each cache step that fails is logged (without the session
key) and skipped, and the database answers, as the plain `db` store would.

What remains while the cache is away: a sign-out deletes the session row, but cannot delete the cached copy. When
the cache comes back, that copy is read again until it expires (at most SESSION_COOKIE_AGE), so a sign-out during
an outage is not final on this store. SessionIdleTimeoutMiddleware still ends it after SESSION_IDLE_TIMEOUT.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db, db
from django.core.cache import caches

log = logging.getLogger(__name__)


def _cache_failed(step: str, error: Exception) -> None:
    log.warning(
        "Session cache unavailable (%s: %s); using the database alone",
        step,
        type(error).__name__,
    )


class SessionStore(cached_db.SessionStore):
    def load(self) -> dict[str, Any]:
        try:
            return super().load()
        except Exception as error:  # any cache backend's connection error
            _cache_failed("read", error)
            return db.SessionStore.load(self)

    def exists(self, session_key: str) -> bool:
        try:
            return bool(super().exists(session_key))
        except Exception as error:
            _cache_failed("exists", error)
            return bool(db.SessionStore.exists(self, session_key))

    def delete(self, session_key: str | None = None) -> None:
        # The database row goes first, so the session cannot be loaded from it again.
        db.SessionStore.delete(self, session_key)
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        try:
            caches[settings.SESSION_CACHE_ALIAS].delete(self.cache_key_prefix + key)
        except Exception as error:
            _cache_failed("delete", error)
