"""DJANGO_LOG_FORMAT=json: one JSON object per line, from the web, worker and beat processes alike.

Each object names the request it was logged in (`request_id`, from config.middleware.RequestIdMiddleware, which
echoes it in the X-Request-ID response header) and the Celery task (`task_id`), or null outside one. The message
is the one the patient filter (imports.phi_logging) left: the filter runs on the handler, before any formatter, so
JSON lines are redacted exactly as plain ones. Only these fixed fields are written, never a record's `extra`
attributes, which no filter has looked at.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy or a client may hand us as its request id; anything else (too long, spaces, quotes, control
# characters that could forge a log line) is replaced by one of ours.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# The request being answered in this thread (or asyncio task); None outside a request.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token (at most 64 of A-Z a-z 0-9 . _ -), else a new one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _task_id() -> str | None:
    # Only a process that imported Celery can be running a task; the lookup never imports it.
    state = sys.modules.get("celery._state")
    task = state.get_current_task() if state is not None else None
    if task is None:
        return None
    return getattr(task.request, "id", None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
            "task_id": _task_id(),
            "process": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # ensure_ascii keeps every line plain ASCII; json escapes newlines, so a traceback stays on its line.
        return json.dumps(entry, default=str)
