"""The audit trail: who did what, append-only and hash-chained.

- `records`: recording an event (`audit_record`, the acting user or system, the request's IP and user agent).
- `chain`: the canonical form and keyed hash (HMAC-SHA256, DJANGO_AUDIT_KEY) of an event; `verify_audit` recomputes it.
- `guard`: the database triggers that refuse UPDATE, DELETE and TRUNCATE on the trail.
- `checkpoints`: the signed head of the trail, which `verify_audit --checkpoints` compares with the chain.
- `keys`: the audit key, read from settings when it is used.
"""
