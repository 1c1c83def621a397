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
- **Libraries that echo data**: botocore, boto3, s3transfer and urllib3 log request URLs (S3 keys)
  and response bodies at DEBUG, and django.db.backends logs SQL with its parameters; their records
  below WARNING are dropped, whatever level is configured.

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


def _redact_argument(key: str, value: Any) -> Any:
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
        if isinstance(args, dict):
            args = {k: _redact_argument(str(k), v) for k, v in args.items()}
        try:
            message = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError, KeyError):
            # A malformed call: log what was passed rather than lose the line.
            message = f"{record.msg} {args!r}"
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
