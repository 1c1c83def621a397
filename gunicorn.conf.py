"""gunicorn's settings for the dashboard, read by default from the directory gunicorn starts in (`-c` names another).

The access log names every URL requested, and query strings carry S3 URIs, patient IDs and study UIDs
(`/browse/?uri=s3://…/DEMO0001/`, `/drafts/1/editor/?study=2.25…`). Its lines go through the patient filter every
other log goes through (imports.phi_logging): query strings keep their parameter names and lose their values, in
the request line, the Referer and Location headers and the query atom alike, whatever `--access-logformat` says.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

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
