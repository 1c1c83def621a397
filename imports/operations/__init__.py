"""Running the dashboard: what operations teams ask of it.

- `health`: the probes behind `/healthz` and `/readyz` (database, broker, beat, migrations), each bounded
  by a timeout, none calling AWS; and the beat heartbeat they read.
"""
