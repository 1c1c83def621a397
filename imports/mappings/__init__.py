"""The mapping rules, in plain Python (no Django): the composer, the confirmation and the CLI share them.

- `rules`: every check of a set of mappings against the scanned index and HealthImaging's limits.
- `csvfile`: reading and writing the mappings CSV (refused whole when any row is wrong).
"""
