"""Scanning an S3 prefix: list every object, read DICOM headers with ranged GETs, index the result.

On the workers a scan fans out: a coordinator task (imports.tasks.scan_prefix) writes the listing as chunks,
and chunk tasks (imports.tasks.scan_chunk) read them in any worker process; inline from `manage.py scan` it runs
in that one process. Only the calling thread touches the database; a thread pool does the S3 reads. Results are cached per object
version (bucket, key, ETag) in ObjectHeader, so a rescan of an unchanged prefix issues no GET. The
study/series index is written in one transaction together with the final status, so a failed or
cancelled scan never leaves half an index behind.

Modules by concern:
- `browse`: one folder page at a time, each object with its kind, and what to say when S3 refuses.
- `control`: starting, cancelling and recovering scans (stalled, or never delivered to a worker).
- `run`: claiming a scan, listing the prefix, and ending the scan with its index.
- `fanout`: the coordinator, the chunk tasks under a lease, the fan-in through database counters.
- `shared`: what chunks share through the database: the scan's breaker, the SlowDown ramp, the read cap.
- `pipeline`: the read pool, the ETag cache, retries and the breaker.
- `reader`: reading one object (in the pool, no database).
- `index`: building the study and series index.
- `lookup`: the scan a draft is composed against.
- `tally`: the words for what a scan found.
"""
