"""Production settings are safe by default; CI really runs on PostgreSQL and Redis."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

# The variables the README's "Production" section asks for; nothing else.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_AUDIT_KEY": secrets.token_hex(32),
    "DJANGO_ALLOWED_HOSTS": "imports.hospital.example",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_production_variables() -> None:
    result = manage("check", "--deploy", "--fail-level", "DEBUG", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "Set the DJANGO_SECRET_KEY environment variable" in result.stderr


def test_it_refuses_to_start_without_an_audit_key_when_debug_is_off() -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_AUDIT_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_AUDIT_KEY must be set" in result.stderr


def test_it_refuses_a_short_audit_key() -> None:
    result = manage("check", env={**PRODUCTION_ENV, "DJANGO_AUDIT_KEY": "short"})
    assert result.returncode != 0
    assert "at least 32 characters" in result.stderr


def test_debug_derives_an_audit_key_and_says_so() -> None:
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(len(settings.AUDIT_KEY))",
        env={"DJANGO_DEBUG": "true"},
    )
    assert result.returncode == 0, result.stderr
    assert "DJANGO_AUDIT_KEY is not set" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "64"


def test_production_has_secure_cookies_and_no_localaws() -> None:
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, "
        "'localaws' in s.INSTALLED_APPS, 'axes' in s.INSTALLED_APPS, s.SESSION_IDLE_TIMEOUT)",
        env=PRODUCTION_ENV,
    )
    assert result.stdout.strip().splitlines()[-1] == (
        "True True True True Lax False True 1800"
    ), result.stderr


def test_the_runtime_requirements_leave_the_development_tools_out() -> None:
    runtime = (ROOT / "requirements.txt").read_text()
    development = (ROOT / "requirements-dev.txt").read_text()
    names = {
        line.split("==")[0].lower()
        for line in runtime.splitlines()
        if line and not line.startswith("#")
    }
    for tool in (
        "moto",
        "playwright",
        "pytest",
        "waitress",
        "django-stubs",
        "mypy",
        "hypothesis",
    ):
        assert tool not in names
        assert f"\n{tool}==" in development.lower()
    assert {"django", "django-axes", "celery", "boto3", "gunicorn"} <= names
    assert development.splitlines()[2] == "-r requirements.txt"
    assert "://" not in runtime + development


def test_debug_is_off_unless_asked_for() -> None:
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        env=PRODUCTION_ENV,
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_ci_runs_on_the_stack_it_says() -> None:
    """.ci/run runs the suite twice, saying which stack each run is on: the embedded default a fresh
    clone gets (SQLite, the file-system broker), then PostgreSQL and Redis."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI says which stack it runs on")
    stack = os.environ.get("CI_STACK")
    engine = settings.DATABASES["default"]["ENGINE"]
    if stack == "embedded":
        assert engine == "django.db.backends.sqlite3"
        assert settings.CELERY_BROKER_URL == "filesystem://"
    elif stack == "postgresql-redis":
        assert engine == "django.db.backends.postgresql"
        assert settings.CELERY_BROKER_URL.startswith("redis://")
    else:
        pytest.fail(
            f"CI_STACK is {stack!r}: .ci/run says 'embedded' or 'postgresql-redis'"
        )


def _session_engine(**env: str) -> str:
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SESSION_ENGINE)",
        env={**PRODUCTION_ENV, **env},
    )
    return result.stdout.strip().splitlines()[-1]


def test_sessions_stay_in_the_database_with_a_per_process_cache() -> None:
    # A sign-out in one gunicorn worker must not leave the session alive in another worker's memory.
    engine = _session_engine(CACHE_URL="locmemcache://")
    assert engine == "django.contrib.sessions.backends.db"


def test_sessions_are_read_through_a_shared_cache() -> None:
    engine = _session_engine(CACHE_URL="rediscache://127.0.0.1:6379/1")
    assert engine == "config.sessions"
