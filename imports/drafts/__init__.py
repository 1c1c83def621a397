"""Composing an import: a draft pairs studies and series with DICOM JSON files, then becomes a job.

- `services`: every change to a draft, one call each, versioned against stale tabs.
- `selectors`: the Drafts list, and the open draft that "Fix" reuses.
- `composer`: what the composer page shows (the study/series tree, the mappings, their problems).
- `suggestions`: mappings suggested from the files' own UIDs.
- `preview`: one series' header as HealthImaging would store it (original ⊕ study file ⊕ series file).
- `from_job`: drafts made from an import job (retry its failed files, clone it).
- `summary`: the confirmation page's plain summary (studies, series, attributes set, patient ones apart).
- `confirmation`: every check again, then the job (`imports.jobs.submit.job_create`).
"""
