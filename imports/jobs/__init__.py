"""Import jobs: from a confirmed request to per-file results.

- `request`: the exact StartDICOMImportJob parameters and their sha256.
- `submit`: storing a confirmed job and submitting it exactly once, behind the datastore's quota.
- `limiter`: the shared one-call-per-interval slot for StartDICOMImportJob.
- `tracking`: the one poller, external jobs, the email at the end.
- `leases`: one run of a periodic task at a time (the poller's), across processes and machines.
- `results`: reading the manifest and the ndjson result files.
- `image_sets`: the image sets a job made, a page at a time, named by study and series.
- `derived`: the duplicate-import guards (the same request again; SOP instances a completed job imported).
"""
