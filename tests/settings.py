"""Test settings: the real settings module, with a throwaway key and a fast password hasher.

Everything else (database, broker) comes from the environment exactly as in production, so CI runs
the suite on PostgreSQL and Redis by exporting DATABASE_URL and CELERY_BROKER_URL.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")
# A fixed audit key, whatever the environment says: tests/audit/test_chain_stability.py pins hashes made with it.
TEST_AUDIT_KEY = "tests-only-audit-key-not-a-secret-0123456789"
os.environ["DJANGO_AUDIT_KEY"] = TEST_AUDIT_KEY
# The test client and the live server speak plain HTTP.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
# The tests run localaws (and the worker they start reads these settings too).
os.environ.setdefault("DJANGO_LOCALAWS", "true")
# Without Redis, tests use a file-system broker folder apart from the demo's.
os.environ.setdefault(
    "CELERY_FILESYSTEM_DIR",
    str(Path(__file__).resolve().parent.parent / "var" / "celery-tests"),
)

from config.settings import *  # noqa: E402,F403
from config.settings import BASE_DIR, DATABASES, STORAGES  # noqa: E402

# Django's transactional tests flush the database between tests: the append-only triggers let that one
# command empty the audit table here, and nowhere else (imports/audit/guard.py).
AUDIT_MAINTENANCE_BYPASS = True
# Checkpoints go to the log only, unless a test names a prefix.
AUDIT_CHECKPOINT_S3_URI = ""

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The manifest storage needs `collectstatic` first; tests serve static files from the source tree.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A file-backed SQLite test database (not :memory:) so that a Celery worker in another process
# can open the same database as the test that enqueued its task.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test-db.sqlite3")}

# Serve static files straight from static/ (no collectstatic in tests), as in DEBUG.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Scan retries on a test's time scale: S3 trouble in a test lasts seconds, not minutes. The patience
# stays well above the outages the completing tests inject (a few seconds), and SCAN_PATIENCE_S can be
# lowered per test with the `settings` fixture for runs in the test process.
SCAN_RETRY_BASE_S = 0.05
SCAN_RETRY_MAX_S = 0.5
SCAN_PATIENCE_S = float(os.environ.get("SCAN_PATIENCE_S", "20"))
# One attempt per AWS request, as when botocore's retry quota has drained under a storm (500 tokens,
# 5 per throttled retry): a test prefix of a few dozen objects would never drain it, and botocore's
# throttle backoff (up to 15 s per request) would then hide the scan's own retries from the tests.
AWS_MAX_ATTEMPTS = int(os.environ.get("AWS_MAX_ATTEMPTS", "1"))
