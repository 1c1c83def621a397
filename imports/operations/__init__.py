"""Running the dashboard: what operations teams ask of it.

- `health`: the probes behind `/healthz` and `/readyz` (database, broker, beat, migrations), each bounded
  by a timeout, none calling AWS; and the beat heartbeat they read.
- `metrics`: what `/metrics` answers Prometheus (behind DJANGO_METRICS_TOKEN): the state read at scrape time,
  and the counters kept at the door to AWS (imports/aws/metrics.py) and in the limiter.
"""
