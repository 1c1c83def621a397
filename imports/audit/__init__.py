"""The audit trail: who did what, append-only and hash-chained.

- `records`: recording an event (`audit_record`, the acting user or system, the request's IP and user agent).
- `chain`: the canonical form and hash of an event; `verify_audit` recomputes it.
- `guard`: the database triggers that refuse UPDATE and DELETE on the trail.
"""
