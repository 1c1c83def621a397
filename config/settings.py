"""Settings for the HealthImaging Import Dashboard.

One module for every environment: production differs from a laptop only by environment variables
(the README lists them). Defaults are safe: DEBUG is off, secure cookies and HSTS are on when it is off,
and with nothing configured the app runs on SQLite and a file-system Celery broker under var/.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import warnings
from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

# Lets `admin.ModelAdmin[Datastore]` and friends be subscripted at run time, for the type checker.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str(
        "DJANGO_SECRET_KEY", default="insecure-development-key-only-for-debug"
    )
else:
    # No default on purpose: a production instance must not start with a guessable key.
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")

# The audit trail's HMAC key (imports/audit/chain.py). Kept outside the database on purpose: whoever owns
# the database can rewrite events, but cannot recompute their keyed hashes without it. Production refuses
# to start without one (the conservative choice: a trail hashed without a secret proves nothing, and a
# system check would still let `runserver`, Celery or a `--skip-checks` command write such events).
# DEBUG (the demo) derives one from SECRET_KEY and says so.
AUDIT_KEY = env.str("DJANGO_AUDIT_KEY", default="")
AUDIT_KEY_MIN_LENGTH = 32
if not AUDIT_KEY and DEBUG:
    AUDIT_KEY = hmac.new(
        SECRET_KEY.encode(), b"imports audit chain (DEBUG only)", hashlib.sha256
    ).hexdigest()
    warnings.warn(
        "DJANGO_AUDIT_KEY is not set: the audit trail is keyed with a key derived from "
        "DJANGO_SECRET_KEY, acceptable for the demo only (DEBUG). Set DJANGO_AUDIT_KEY in production.",
        stacklevel=1,
    )
elif len(AUDIT_KEY) < AUDIT_KEY_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"DJANGO_AUDIT_KEY must be set to a secret of at least {AUDIT_KEY_MIN_LENGTH} characters "
        "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), kept outside the "
        "database: the audit trail's hashes are keyed with it."
    )

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.DashboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django.contrib.humanize",
    "imports",
    # Login throttling and lockout (AXES_* below).
    "axes",
]
# localaws (the local S3 and HealthImaging stand-in, and seed_demo) is a development tool: production
# neither installs moto nor registers the app. The demo (DEBUG) and the tests turn it on.
LOCALAWS = env.bool("DJANGO_LOCALAWS", default=DEBUG)
if LOCALAWS:
    INSTALLED_APPS.append("localaws")

MIDDLEWARE = [
    # First, so that every line logged for a request, and every answer (redirects included), carries its id.
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    # A NUL in a query string is a 400 before any view or the admin can send it to the database.
    "config.middleware.NulRefusalMiddleware",
    # Before everything that may record an audit event (sign-ins included).
    "config.middleware.AuditOriginMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Signs out a session left idle for SESSION_IDLE_TIMEOUT; must come before the login check.
    "config.middleware.SessionIdleTimeoutMiddleware",
    # Every page requires a login unless its view is marked @login_not_required (only the login page).
    "config.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Pages and exports can carry patient data: no browser or proxy may keep a copy.
    "config.middleware.NoStoreMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "imports.context_processors.navigation",
            ],
        },
    },
]

SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default has the web process, a worker and beat writing one file:
    # - a writer waits up to 20 s for another's lock (SQLite's default is 5 s, which a busy laptop's
    #   worker outlasted);
    # - write-ahead logging lets readers and the one writer go on side by side (in the default rollback
    #   journal, a reader that has not finished holds back every writer's commit);
    # - IMMEDIATE transactions take the write lock at BEGIN, where the 20 s wait applies. A DEFERRED one
    #   that read first and then writes while another writes is refused at once ("database is locked"),
    #   whatever the timeout.
    DATABASES["default"]["OPTIONS"] = {
        **SQLITE_OPTIONS,
        **DATABASES["default"].get("OPTIONS", {}),
    }
# Per-process memory by default; CACHE_URL=redis://... shares it between gunicorn workers.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# Sessions are read through the cache when the cache is shared by every process (Redis, Memcached), so
# the polled status fragments read no session row. A per-process cache (the locmem default) would keep a
# session that another gunicorn worker ended (sign-out) alive in its own memory: sessions stay in the
# database then. cached_db still writes every session to the database, so a cache flush signs nobody out.
_SHARED_CACHE = CACHES["default"]["BACKEND"].rsplit(".", 1)[-1] in (
    "RedisCache",  # Django's own, or django-redis's when it is installed
    "PyMemcacheCache",
    "PyLibMCCache",
)
# config/sessions.py: cached_db that falls back to the database while the cache is away.
SESSION_ENGINE = (
    "config.sessions" if _SHARED_CACHE else "django.contrib.sessions.backends.db"
)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out sign-in before any password is checked. Then Django's
# ModelBackend, with the user and its permissions read in one query (config/auth.py).
AUTHENTICATION_BACKENDS = [
    "config.auth_backends.LockoutBackend",
    "config.auth.OneQueryModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "imports:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
if DEBUG:
    STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }

# --- Security -------------------------------------------------------------------------------
# Behind a TLS-terminating proxy, set DJANGO_SECURE_PROXY_SSL_HEADER=true so Django trusts
# X-Forwarded-Proto. The secure defaults below apply whenever DEBUG is off.
_behind_proxy = env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False)
if _behind_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front append to X-Forwarded-For; the audit trail records the address the
# outermost one saw (imports.audit.records.client_ip). 0: REMOTE_ADDR, and X-Forwarded-For is ignored,
# since anyone can send it. A proxy that sets X-Forwarded-Proto is assumed to be one such hop.
TRUSTED_PROXY_COUNT = env.int(
    "DJANGO_TRUSTED_PROXY_COUNT", default=1 if _behind_proxy else 0
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int(
    "DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG
)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# htmx reads the token from the page (<body hx-headers>), never from the cookie, so scripts need not see it.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
# The longest a sign-in lasts, however busy, and how long it survives without a request
# (config.middleware.SessionIdleTimeoutMiddleware; the polling of progress bars does not count).
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 60 * 60)
SESSION_IDLE_TIMEOUT = env.int("DJANGO_SESSION_IDLE_TIMEOUT", default=30 * 60)
X_FRAME_OPTIONS = "DENY"
# Only the dashboard's own origin: every script and stylesheet is vendored under static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# --- Login throttling (django-axes) -----------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one user name from one address, that pair is locked
# out for AXES_COOLOFF_TIME. Locking the pair (not the account) keeps a stranger from locking a
# colleague out; `manage.py axes_reset_username NAME` lifts a lockout early.
AXES_FAILURE_LIMIT = env.int("DJANGO_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(
    minutes=env.int("DJANGO_LOGIN_LOCKOUT_MINUTES", default=15)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address is REMOTE_ADDR: behind a proxy that is the proxy's own, so there the lockout is in
# effect per user name (still a lockout; X-Forwarded-For is not trusted, since anyone can send it).
# Lockouts are lifted with the management command; the admin offers no axes pages to keep the
# Administrator role's permissions what imports.roles says.
AXES_ENABLE_ADMIN = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# --- Logging: everything to stdout, never patient data --------------------------------------
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
# "plain" lines for a terminal, or "json": one object per line with request_id and task_id (config/log_format.py),
# for web, worker and beat alike (gunicorn.conf.py and config/celery.py use the same formatter).
LOG_FORMAT = env.str("DJANGO_LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(
        f"DJANGO_LOG_FORMAT is {LOG_FORMAT!r}; it is 'plain' (the default) or 'json'."
    )
# Every handler carries the PHI filter (imports/phi_logging.py: what it redacts, and its limits);
# Celery's worker adds it to the handlers Celery sets up itself (config/celery.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "phi": {"()": "imports.phi_logging.PhiRedactingFilter"},
        "refusals_are_not_errors": {"()": "config.log_filters.RefusalsAreNotErrors"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.log_format.JsonFormatter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["phi"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default "console" handler (DEBUG only) on top of the root's printed every line twice.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        # A 403 is logged as one line by imports.views.errors, not as a PermissionDenied traceback.
        "django.request": {"filters": ["refusals_are_not_errors"]},
        # botocore logs request parameters (study UIDs are PHI-adjacent) at DEBUG.
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO; lockouts come at WARNING.
        "axes": {"level": "WARNING"},
        # The audit checkpoints are logged at INFO whatever DJANGO_LOG_LEVEL says: the log is where they are kept.
        "imports.operations.audit_checkpoints": {"level": "INFO"},
    },
}

# --- Celery ---------------------------------------------------------------------------------
# Without CELERY_BROKER_URL, Celery uses kombu's file-system transport under var/celery so a laptop
# needs no Redis. Task state lives in the database, so there is no result backend.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _celery_dir = Path(
        env.str("CELERY_FILESYSTEM_DIR", default=str(VAR_DIR / "celery"))
    )
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
        # kombu polls the folder once a second by default, and a worker's shutdown waits out
        # several polls: with Ctrl-C in `make demo` that ran past honcho's 5 s before SIGKILL.
        "polling_interval": 0.1,
    }
    # kombu's transport with whole-message writes (config/broker_files.py says why).
    CELERY_BROKER_TRANSPORT = "config.broker_files:Transport"
    for _folder in ("queue", "processed", "control"):
        (_celery_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Tasks are idempotent (they claim their row with a conditional UPDATE), so late acks are safe and
# a worker that dies mid-task hands the message to another worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=35 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker told to stop cold (SIGQUIT; SIGTERM too under REMAP_SIGTERM=SIGQUIT, as in Procfile.demo) lets
# running tasks go on this many seconds, then cancels them; late acks put them back on the queue.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float(
    "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", default=0.0
)
# Four queues, so that one kind of work never waits behind another (README, "Queues"): `scan` (reading
# prefixes), `submit` (StartDICOMImportJob behind the shared limiter), `poll` (tracking AWS jobs, reading their
# results, the external-job sync, notifications) and `default` (beat's housekeeping). A worker started without
# -Q consumes all four; a deployment can give each its own workers (`celery -A config worker -Q submit`).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "scan", "submit", "poll")]
CELERY_TASK_ROUTES = {
    "imports.scan_prefix": {"queue": "scan"},
    "imports.scan_chunk": {"queue": "scan"},
    "imports.job_submit": {"queue": "submit"},
    "imports.jobs_poll": {"queue": "poll"},
    "imports.job_ingest_results": {"queue": "poll"},
    "imports.jobs_sync_external": {"queue": "poll"},
    "imports.job_notify": {"queue": "poll"},
    "imports.campaign_notify": {"queue": "poll"},
    # Deleting staging copies calls S3, as staging them does.
    "imports.campaign_staging_delete": {"queue": "scan"},
    # A campaign's staging copies read and write S3, as scans do.
    "imports.campaign_stage": {"queue": "scan"},
}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "recover-stalled-scans": {
        "task": "imports.scans_recover_stalled",
        "schedule": 60.0,
    },
    # The one AWS poller: browsers only read the database.
    "poll-import-jobs": {"task": "imports.jobs_poll", "schedule": 2.0},
    # Campaigns: hand the next jobs to submission, account for the ended ones (imports.campaigns.accounting).
    "advance-campaigns": {"task": "imports.campaigns_advance", "schedule": 10.0},
    "requeue-pending-import-jobs": {
        "task": "imports.jobs_requeue_pending",
        "schedule": 30.0,
    },
    "sync-external-import-jobs": {
        "task": "imports.jobs_sync_external",
        "schedule": 300.0,
    },
    # /healthz reads it: beat schedules, a worker writes the row.
    "beat-heartbeat": {
        "task": "imports.beat_heartbeat",
        "schedule": env.float("HEALTH_BEAT_EVERY_S", default=15.0),
    },
}
# The audit trail's head, signed with AUDIT_KEY, written to the log (and to S3 when AUDIT_CHECKPOINT_S3_URI
# names a prefix, one object per checkpoint) so that `verify_audit --checkpoints` can find a trail cut short.
AUDIT_CHECKPOINT_EVERY_S = env.float("AUDIT_CHECKPOINT_EVERY_S", default=3600.0)
AUDIT_CHECKPOINT_S3_URI = env.str("AUDIT_CHECKPOINT_S3_URI", default="")
CELERY_BEAT_SCHEDULE["checkpoint-the-audit-trail"] = {
    "task": "imports.audit_checkpoint",
    "schedule": AUDIT_CHECKPOINT_EVERY_S,
}
# Whether the append-only triggers let `manage.py flush` empty the audit table (imports/audit/guard.py).
# Deliberately not read from the environment: only tests/settings.py turns it on.
AUDIT_MAINTENANCE_BYPASS = False
# /healthz and /readyz (imports/operations/health.py): each probe's timeout, and the age past which
# beat's heartbeat is reported stale (beat sends one every HEALTH_BEAT_EVERY_S).
HEALTH_PROBE_TIMEOUT_S = env.float("HEALTH_PROBE_TIMEOUT_S", default=2.0)
HEALTH_BEAT_MAX_AGE_S = env.float("HEALTH_BEAT_MAX_AGE_S", default=60.0)
# GET /metrics (imports/operations/metrics.py) answers Prometheus text to a scraper that sends
# "Authorization: Bearer <DJANGO_METRICS_TOKEN>"; with no token configured it is off (404).
METRICS_TOKEN = env.str("DJANGO_METRICS_TOKEN", default="")
# Counters kept by every gunicorn and Celery process add up in prometheus_client's multiprocess mode: each
# process writes its own files in this folder and /metrics reads them all. With a token it defaults to
# var/prometheus; the web, worker and beat processes must share it, and it is emptied before they start
# (README, Operations). prometheus_client reads the variable once, when it is first imported: it is set here,
# before anything imports it.
PROMETHEUS_MULTIPROC_DIR = env.str(
    "PROMETHEUS_MULTIPROC_DIR",
    default=str(VAR_DIR / "prometheus") if METRICS_TOKEN else "",
)
if PROMETHEUS_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# --- AWS ------------------------------------------------------------------------------------
# boto3 reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE and friends from the environment
# itself; the dashboard only adds timeouts and the retry policy (imports/aws/client.py).
AWS_CONNECT_TIMEOUT = env.float("AWS_CONNECT_TIMEOUT", default=5.0)
AWS_READ_TIMEOUT = env.float("AWS_READ_TIMEOUT", default=30.0)
AWS_MAX_ATTEMPTS = env.int("AWS_MAX_ATTEMPTS", default=5)

# --- Import jobs ----------------------------------------------------------------------------
# StartDICOMImportJob is throttled per account: AWS's older throttling page says 1 call/s (burst 2), a newer one
# 40/s (burst 80). Each datastore sets its rate (Datastore.start_jobs_per_second, default 1), one slot per interval
# shared by all workers, in Redis when the broker is Redis (or JOBS_LIMITER_URL names one), else in the database.
JOBS_LIMITER_URL = env.str(
    "JOBS_LIMITER_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "",
)
JOBS_LIMITER_WAIT_S = env.float("JOBS_LIMITER_WAIT_S", default=30.0)
# Transient submission errors (throttling, 5xx, no connection, no answer): retried with capped
# exponential backoff and jitter for JOB_SUBMIT_PATIENCE_S after the first attempt, always with the
# same client token; a campaign runs unattended, so the patience is measured in time. A positive
# JOBS_SUBMIT_MAX_ATTEMPTS bounds the attempts too (0: only the patience counts).
JOB_SUBMIT_PATIENCE_S = env.float("JOB_SUBMIT_PATIENCE_S", default=30 * 60.0)
JOBS_SUBMIT_MAX_ATTEMPTS = env.int("JOBS_SUBMIT_MAX_ATTEMPTS", default=0)
# StartDICOMImportJob's own read timeout: an attempt that times out is "outcome unknown" (AWS may
# have started the job), so give it longer than the other calls' AWS_READ_TIMEOUT.
JOBS_SUBMIT_READ_TIMEOUT_S = env.float("JOBS_SUBMIT_READ_TIMEOUT_S", default=60.0)
# The duplicate-request guard (imports/jobs/derived.py): a job whose datastore, input and mappings equal those
# of a job confirmed within this many days needs an explicit, audited "import again". 30 days is HealthImaging's
# minimum billing period for what an import stores, so a duplicate inside it costs the whole period again.
JOBS_DUPLICATE_WINDOW_DAYS = env.int("JOBS_DUPLICATE_WINDOW_DAYS", default=30)
JOBS_SUBMIT_BACKOFF_S = env.float("JOBS_SUBMIT_BACKOFF_S", default=1.0)
JOBS_SUBMIT_BACKOFF_CAP_S = env.float("JOBS_SUBMIT_BACKOFF_CAP_S", default=60.0)
# How long a submission attempt owns its job; longer than the limiter wait plus one AWS call.
JOBS_SUBMIT_LEASE_S = env.int("JOBS_SUBMIT_LEASE_S", default=120)
# A job PENDING this long (broker down at confirm, message lost) is enqueued again by beat.
JOBS_PENDING_REQUEUE_S = env.int("JOBS_PENDING_REQUEUE_S", default=60)
# Campaigns (imports.campaigns): seconds before a staging copy that met a transient S3 error is tried again, and
# the days staged copies are expected to stay before clean-up (the plan's storage cost in GB-days).
CAMPAIGN_STAGE_RETRY_S = env.float("CAMPAIGN_STAGE_RETRY_S", default=10.0)
CAMPAIGN_STAGING_DAYS = env.float("CAMPAIGN_STAGING_DAYS", default=7.0)
# Delete a campaign's staging copies by itself once it ends (else on request: the campaign page, `campaign clean`).
CAMPAIGN_STAGING_DELETE_ON_END = env.bool(
    "CAMPAIGN_STAGING_DELETE_ON_END", default=False
)
JOBS_REQUEUE_BATCH = env.int("JOBS_REQUEUE_BATCH", default=100)
# Polling: GetDICOMImportJob calls per beat run (every 2 s: at most 10/s, well under AWS's 25/s).
JOBS_POLL_BUDGET = env.int("JOBS_POLL_BUDGET", default=20)
# A poll's AWS time is bounded within the task's 120 s soft limit: each GetDICOMImportJob gets
# JOBS_POLL_ATTEMPTS tries of JOBS_POLL_READ_TIMEOUT_S, the run stops asking after JOBS_POLL_TIME_BUDGET_S or after
# JOBS_POLL_FAILURES_TO_STOP failures in a row (HealthImaging away: the next poll, 2 s later, tries again), and only
# one poll runs at a time (imports/jobs/leases.py).
JOBS_POLL_ATTEMPTS = env.int("JOBS_POLL_ATTEMPTS", default=2)
JOBS_POLL_READ_TIMEOUT_S = env.float("JOBS_POLL_READ_TIMEOUT_S", default=10.0)
JOBS_POLL_TIME_BUDGET_S = env.float("JOBS_POLL_TIME_BUDGET_S", default=60.0)
JOBS_POLL_FAILURES_TO_STOP = env.int("JOBS_POLL_FAILURES_TO_STOP", default=3)
JOBS_POLL_FIRST_S = env.float("JOBS_POLL_FIRST_S", default=2.0)
# The output manifest can appear after the job ends: retry NoSuchKey every RETRY_S for WAIT_S.
JOBS_MANIFEST_WAIT_S = env.int("JOBS_MANIFEST_WAIT_S", default=120)
JOBS_MANIFEST_RETRY_S = env.int("JOBS_MANIFEST_RETRY_S", default=5)
# A results reader renews its lease with every 1,000 rows it stores: a dead one is replaced after this.
JOBS_INGEST_LEASE_S = env.int("JOBS_INGEST_LEASE_S", default=120)
JOBS_SYNC_MAX_PAGES = env.int("JOBS_SYNC_MAX_PAGES", default=20)
# Verification after a job (imports/jobs/verification.py): GetImageSetMetadata answers "not consistent yet" or
# throttles for a while after an import; it is asked again every RETRY_S for PATIENCE_S, then "not verified yet".
JOBS_VERIFY_PATIENCE_S = env.int("JOBS_VERIFY_PATIENCE_S", default=300)
# How many studies a prediction looks up in HealthImaging at once (imports/drafts/prediction.py says why 4).
PREDICTION_CONCURRENCY = env.int("PREDICTION_CONCURRENCY", default=4)
# A draft of more studies than this is predicted by a task, the confirmation page showing its progress.
PREDICTION_INLINE_STUDIES = env.int("PREDICTION_INLINE_STUDIES", default=100)
JOBS_VERIFY_RETRY_S = env.int("JOBS_VERIFY_RETRY_S", default=5)
JOBS_VERIFY_LEASE_S = env.int("JOBS_VERIFY_LEASE_S", default=300)
# The signed import record's HMAC-SHA256 key (imports/jobs/record.py). Unset, it is derived from SECRET_KEY, so
# `import_record verify` checks a record only where the same SECRET_KEY (or this key) is configured.
IMPORT_RECORD_KEY = env.str("IMPORT_RECORD_KEY", default="")
# Job emails: EMAIL_URL (smtp://user:password@host:587) or the console by default; links use SITE_URL.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="healthimaging-dashboard@localhost"
)
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Scanning -------------------------------------------------------------------------------
# Header reads start with SCAN_FIRST_READ_BYTES and are extended only when the header runs past them.
# 32 by measurement (issue 11): with 20 ms of S3 latency a scan read 360 objects/s on 16 threads, 570 on 32
# and 630 on 48, at the same CPU per object; 32 keeps the connections per scan modest.
SCAN_THREADS = env.int("SCAN_THREADS", default=32)
# 8 KiB holds most headers whole; each folder then learns its own size (imports.scanning.reader.FirstReadSizes).
SCAN_FIRST_READ_BYTES = env.int("SCAN_FIRST_READ_BYTES", default=8 * 1024)
# JSON metadata files larger than this are reported, not read.
SCAN_JSON_MAX_BYTES = env.int("SCAN_JSON_MAX_BYTES", default=1024 * 1024)
# A running scan that has not reported progress for this long lost its worker; beat requeues it.
SCAN_STALL_TIMEOUT_S = env.int("SCAN_STALL_TIMEOUT_S", default=10 * 60)
# A scan still QUEUED this long after it started is sent to the broker again (it was down then).
SCAN_QUEUED_REQUEUE_S = env.int("SCAN_QUEUED_REQUEUE_S", default=60)
SCAN_MAX_ATTEMPTS = env.int("SCAN_MAX_ATTEMPTS", default=3)
# On the workers a scan fans out (imports.scanning.fanout): one chunk task per SCAN_CHUNK_OBJECTS listed
# objects (one ListObjectsV2 page; at most 1,000 when listing). A chunk's worker renews its lease with every
# write (twice a second); one not renewed for SCAN_CHUNK_LEASE_S lost its worker, and beat requeues it.
SCAN_CHUNK_OBJECTS = env.int("SCAN_CHUNK_OBJECTS", default=1000)
SCAN_CHUNK_LEASE_S = env.float("SCAN_CHUNK_LEASE_S", default=120.0)
# Reads in flight across every worker process's chunks together (imports.scanning.shared): each running chunk
# holds a share, renewed with its lease. Size SCAN_THREADS × scan processes against it (README, Scaling out).
SCAN_MAX_INFLIGHT = env.int("SCAN_MAX_INFLIGHT", default=256)
# S3 trouble (throttling, 5xx, timeouts, no connection) is retried by the scan itself, beyond botocore's
# own retries, whose quota drains within seconds under a storm: each object again after a backoff
# with jitter from SCAN_RETRY_BASE_S up to SCAN_RETRY_MAX_S. After SCAN_PATIENCE_S of continuous
# failure the scan gives up on what is left and ends Incomplete ("read the rest" later).
SCAN_RETRY_BASE_S = env.float("SCAN_RETRY_BASE_S", default=1.0)
SCAN_RETRY_MAX_S = env.float("SCAN_RETRY_MAX_S", default=30.0)
SCAN_PATIENCE_S = env.float("SCAN_PATIENCE_S", default=5 * 60.0)
# The circuit breaker: when more than SCAN_BREAKER_RATIO of the last SCAN_BREAKER_WINDOW reads failed
# that way, the whole read pool pauses and one probe at a time asks S3 whether it is back.
SCAN_BREAKER_WINDOW = env.int("SCAN_BREAKER_WINDOW", default=20)
SCAN_BREAKER_RATIO = env.float("SCAN_BREAKER_RATIO", default=0.5)
# Region for S3 browsing when no datastore is chosen (boto3 follows bucket-region redirects).
AWS_DEFAULT_REGION = env.str("AWS_DEFAULT_REGION", default="us-east-1")
