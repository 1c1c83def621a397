"""Keeping patient data out of the logs: a logging filter installed on every handler.

A log line cannot be told apart from patient data by meaning, so the filter works by shape and by
what the process has seen:

- **DICOM UIDs** (`\\d+(\\.\\d+){3,}`: four or more numeric components, and the UUID-derived
  `2.25.<number>` form, which has three) become `[UID]`: the AWS model marks study and series UIDs
  `sensitive`. An IPv4 address has the same shape; one with exactly four
  components of at most 255 is kept, because sign-in lockouts are traced by address.
- **Person names** in DICOM's PN form (`Family^Given`) become `[NAME]`.
- **Named values**: a patient attribute written as `PatientName=…`, `patient_id: …` or under its tag
  `(0010,0020)=…`, and a dictionary log argument whose key is a PHI field
  (`logger.info("%(patient_id)s", {"patient_id": …})`), become `[REDACTED]`.
- **S3 keys**, which often carry patient IDs (many PACS exports name a folder per patient):
  `s3://bucket/key` keeps its bucket only, and a dictionary argument named `key`, `s3_key` or `uri` is
  redacted.
- **Values the process has read**: patient names and IDs taken from DICOM headers are remembered
  (`phi_remember`, a bounded set) and redacted wherever they appear later, e.g. an ID inside a key.
- **Task names**: Celery logs `Task %(name)s[%(id)s] received` with the task's dotted name under the
  argument `name`; from a `celery.*` logger, a `name` that is a dotted Python name
  (`imports.tasks.scan_prefix`) is code, not a person, and is kept.
- **Libraries that echo data**: botocore, boto3, s3transfer and urllib3 log request URLs (S3 keys)
  and response bodies at DEBUG, and django.db.backends logs SQL with its parameters; their records
  below WARNING are dropped, whatever level is configured.

- **Query strings of access logs**: from `gunicorn.access` and `django.server` (runserver), every URL's
  query string keeps its parameter names (lowercase words only) and loses its values:
  `/browse/?uri=[REDACTED]`. A query carries S3 URIs, patient IDs and study UIDs typed or linked
  (`?uri=s3://…/DEMO0001/`, `?study=2.25…`), in the request line and in the Referer and Location headers.
  The gunicorn side is `gunicorn.conf.py` at the project's root.

Exception tracebacks go through the same redaction before any handler formats them.

Limits: a patient ID without a tell-tale shape, never read from a header by this process (the web
process does not read headers), and logged outside the named forms passes through; so do names not
written in PN form ("Jane Doe"). The filter is a safety net: code must still log scan IDs, counts and
error codes, never keys, names or values (see imports/scanning/reader.py).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

UID_MARK = "[UID]"
NAME_MARK = "[NAME]"
REDACTED = "[REDACTED]"

_UID_RE = re.compile(r"(?<![\w.])(?:\d+(?:\.\d+){3,}|2\.25\.\d{6,})(?!\w)")
# A DICOM person name: at least one caret between non-space parts ("Doe^Jane", "Smith^John^A").
_PN_RE = re.compile(r"[^\s\^'\"=:,;()\[\]{}<>]*(?:\^[^\s\^'\"=:,;()\[\]{}<>]*)+")
# Only a run with a caret and at least one letter counts as a name (a lone "^" in a regex does not).
_HAS_LETTER = re.compile(r"[^\W\d_]")
_PHI_FIELDS = (
    r"Patient(?:Name|ID|BirthDate|BirthName|Address|TelephoneNumbers|MotherBirthName|Age|Sex)"
    r"|OtherPatient(?:IDs|Names)(?:Sequence)?"
    r"|patient_(?:name|id|birth_date|address|sex|age)"
)
_NAMED_VALUE_RE = re.compile(
    rf"(?P<field>\b(?:{_PHI_FIELDS})\b|\(?\b0010,?[0-9A-Fa-f]{{4}}\b\)?)"
    r"(?P<sep>['\"]?\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|\S+)"
)
_S3_URI_RE = re.compile(r"(s3://[a-z0-9][a-z0-9.\-]*)/[^\s'\"<>]+")
PHI_ARGUMENT_KEYS = frozenset(
    {
        "patient_name",
        "patient_id",
        "patient_birth_date",
        "patient_address",
        "patientname",
        "patientid",
        "name",
        "key",
        "s3_key",
        "uri",
        "path",
    }
)
# Below WARNING these loggers write request URLs, response bodies or SQL parameters.
DATA_ECHOING_LOGGERS = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "django.db.backends",
)
# Loggers whose lines are requests: their URLs' query strings are redacted (`redact_query_strings`).
ACCESS_LOGGERS = ("gunicorn.access", "django.server")
# A URL's query string, up to what ends a URL in a log line (a space, a quote, a fragment).
_QUERY_STRING_RE = re.compile(r"\?([^\s\"'#]*)")
# A parameter name kept in a redacted query: a lowercase word, as every form of the dashboard names its fields.
_PARAMETER_NAME_RE = re.compile(r"[a-z_]{1,32}")
# A task's registered name: dotted Python identifiers, as `name=` on every task in imports/tasks.py.
_TASK_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
REMEMBERED_MAX = 10_000
# Shorter values (a "1", an "F") would redact half of every line.
REMEMBERED_MIN_LENGTH = 4

_remembered: OrderedDict[str, None] = OrderedDict()
_remembered_re: re.Pattern[str] | None = None
_lock = threading.Lock()


def phi_remember(values: Iterable[str | None]) -> None:
    """Redact these values (patient names and IDs read from a header) from every later log line."""
    global _remembered_re
    added = False
    with _lock:
        for value in values:
            text = (value or "").strip()
            if len(text) < REMEMBERED_MIN_LENGTH:
                continue
            if text in _remembered:
                _remembered.move_to_end(text)
                continue
            _remembered[text] = None
            added = True
            while len(_remembered) > REMEMBERED_MAX:
                _remembered.popitem(last=False)
        if added:
            # Longest first, so that "Smith^John^A" is not cut at "Smith^John".
            alternatives = sorted(_remembered, key=len, reverse=True)
            _remembered_re = re.compile("|".join(map(re.escape, alternatives)))


def phi_forget_all() -> None:
    """Empty the remembered values (tests)."""
    global _remembered_re
    with _lock:
        _remembered.clear()
        _remembered_re = None


def _uid_or_address(match: re.Match[str]) -> str:
    text = match.group(0)
    parts = text.split(".")
    if len(parts) == 4 and all(len(p) <= 3 and int(p) <= 255 for p in parts):
        return text
    return UID_MARK


def _name(match: re.Match[str]) -> str:
    text = match.group(0)
    return NAME_MARK if _HAS_LETTER.search(text) else text


def redact(text: str) -> str:
    """The text with everything that may identify a patient replaced (see the module docstring)."""
    pattern = _remembered_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _NAMED_VALUE_RE.sub(
        lambda m: f"{m.group('field')}{m.group('sep')}{REDACTED}", text
    )
    text = _S3_URI_RE.sub(lambda m: f"{m.group(1)}/{REDACTED}", text)
    text = _PN_RE.sub(_name, text)
    return _UID_RE.sub(_uid_or_address, text)


def redact_query(query: str) -> str:
    """A query string with every value replaced: `uri=s3://b/DEMO0001/&page=2` -> `uri=[REDACTED]&page=[REDACTED]`.

    Only names shaped like the dashboard's own (lowercase words) are kept; any other pair, and a bare value
    (`?DEMO0001`), becomes `[REDACTED]` whole.
    """
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        name, has_value, _ = pair.partition("=")
        if has_value and _PARAMETER_NAME_RE.fullmatch(name):
            pairs.append(f"{name}={REDACTED}")
        else:
            pairs.append(REDACTED)
    return "&".join(pairs)


def redact_query_strings(text: str) -> str:
    """The text with the query string of every URL in it redacted (`redact_query`)."""
    return _QUERY_STRING_RE.sub(lambda m: "?" + redact_query(m.group(1)), text)


def _is_task_name(logger: str, key: str, value: Any) -> bool:
    return (
        key == "name"
        and (logger == "celery" or logger.startswith("celery."))
        and isinstance(value, str)
        and _TASK_NAME_RE.fullmatch(value) is not None
    )


def _redact_argument(logger: str, key: str, value: Any) -> Any:
    if _is_task_name(logger, key, value):
        return value
    if key.lower() in PHI_ARGUMENT_KEYS:
        return REDACTED
    return value


class PhiRedactingFilter(logging.Filter):
    """Installed on every handler (config/settings.py LOGGING, and Celery's in config/celery.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and record.name.startswith(
            DATA_ECHOING_LOGGERS
        ):
            return False
        if getattr(record, "_phi_redacted", False):
            return True
        args = record.args
        if isinstance(args, dict) and any(
            _redact_argument(record.name, str(k), v) is not v for k, v in args.items()
        ):
            # A mapping with nothing to redact is kept as it is: gunicorn's atoms answer "-" for a missing key.
            args = {
                k: _redact_argument(record.name, str(k), v) for k, v in args.items()
            }
        try:
            message = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError, KeyError):
            # A malformed call: log what was passed rather than lose the line.
            message = f"{record.msg} {args!r}"
        if record.name.startswith(ACCESS_LOGGERS):
            message = redact_query_strings(message)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        # A record handled by several handlers is redacted once.
        record._phi_redacted = True
        return True
