"""Archive campaigns (issue 21): an archive planned into quota-sized import jobs, run, and accounted for.

- `planner`: the cut along the folder tree and what must be staged (pure: no Django, no boto3).
- `services`: planning from the scan index and storing the plan; start, pause, resume, cancel.
- `staging`: the CopyObjects of a staged job (task `imports.campaign_stage`).
- `accounting`: handing jobs to submission and the outcome of every object (task `imports.campaign_advance`).
"""
