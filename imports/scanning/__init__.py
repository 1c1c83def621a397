"""Scanning an S3 prefix: list every object, read DICOM headers with ranged GETs, index the result.

The scan runs in a Celery task (imports.tasks.scan_prefix) or inline from `manage.py scan`. Only the
calling thread touches the database; a thread pool does the S3 reads. Results are cached per object
version (bucket, key, ETag) in ObjectHeader, so a rescan of an unchanged prefix issues no GET. The
study/series index is written in one transaction together with the final status, so a failed or
cancelled scan never leaves half an index behind.

Modules by concern: `control` starts, cancels and recovers scans; `run` is the read pipeline the
task runs; `reader` reads one object (in the pool, no database); `index` builds studies and series.
"""
