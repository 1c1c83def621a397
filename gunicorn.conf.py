"""gunicorn's settings for the dashboard, read by default from the directory gunicorn starts in (`-c` names another).

The access log names every URL requested, and query strings carry S3 URIs, patient IDs and study UIDs
(`/browse/?uri=s3://…/DEMO0001/`, `/drafts/1/editor/?study=2.25…`). Its lines go through the patient filter every
other log goes through (imports.phi_logging): query strings keep their parameter names and lose their values, in
the request line, the Referer and Location headers and the query atom alike, whatever `--access-logformat` says.
With DJANGO_LOG_FORMAT=json its lines are JSON objects (config/log_format.py), the access line with the request's
X-Request-ID.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from config.log_format import REQUEST_ID_HEADER, JsonFormatter, request_id
from imports.phi_logging import PhiRedactingFilter, redact_query, redact_query_strings

# The atoms that are a query string on their own (without the "?" that marks one in a URL).
QUERY_ATOMS = frozenset({"q", "{query_string}e"})


class PatientSafeLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with the patient filter on its access and error handlers, and query strings redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            for handler in log.handlers:
                if not any(isinstance(f, PhiRedactingFilter) for f in handler.filters):
                    handler.addFilter(PhiRedactingFilter())
                # DJANGO_LOG_FORMAT=json (config/settings.py): the same JSON lines as Django's.
                if os.environ.get("DJANGO_LOG_FORMAT") == "json":
                    handler.setFormatter(JsonFormatter())

    def access(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> None:
        # The access line carries the id the dashboard answered with (config.middleware.RequestIdMiddleware).
        wanted = REQUEST_ID_HEADER.lower()
        rid = next(
            (value for name, value in resp.headers if name.lower() == wanted), None
        )
        token = request_id.set(rid)
        try:
            super().access(resp, req, environ, request_time)
        finally:
            request_id.reset(token)

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if not isinstance(value, str):
                continue
            atoms[key] = (
                redact_query(value)
                if key in QUERY_ATOMS
                else redact_query_strings(value)
            )
        return atoms


logger_class = PatientSafeLogger
