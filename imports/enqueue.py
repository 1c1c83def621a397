"""The one way to hand work to a Celery worker: by the task's stable name, after the transaction commits.

Services call `enqueue_task(TASK, pk)`; they never import `imports.tasks`, which imports them (that was an
import circle, held together by imports inside functions). The message is sent only once the row it
names is committed, so a worker never looks for a row that is not there yet, and a rolled-back change
sends nothing.

One broker-down policy for every task: if the broker cannot take the message, the row stays queued
(a scan QUEUED, a job PENDING, results PENDING), the page says "waiting for a worker", and a beat task
sends it again (`scans_recover_stalled`, `jobs_requeue_pending`, `jobs_poll`). Each task claims its row
with a conditional UPDATE, so a message sent twice does the work once.

This module imports Celery, kombu and `django.db` only: never a service or a task.
"""

from __future__ import annotations

import functools
import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import KombuError

logger = logging.getLogger(__name__)

# The names under which imports/tasks.py registers its tasks (test_enqueue checks each one).
SCAN_PREFIX = "imports.scan_prefix"
SCAN_CHUNK = "imports.scan_chunk"
JOB_SUBMIT = "imports.job_submit"
JOB_INGEST_RESULTS = "imports.job_ingest_results"
JOB_NOTIFY = "imports.job_notify"
JOB_VERIFY = "imports.job_verify"
DRAFT_PREDICT = "imports.draft_predict"
CAMPAIGN_STAGE = "imports.campaign_stage"
CAMPAIGN_ADVANCE = "imports.campaign_advance"
CAMPAIGN_NOTIFY = "imports.campaign_notify"
CAMPAIGN_STAGING_DELETE = "imports.campaign_staging_delete"
TASK_NAMES = (
    SCAN_PREFIX,
    SCAN_CHUNK,
    JOB_SUBMIT,
    JOB_INGEST_RESULTS,
    JOB_NOTIFY,
    JOB_VERIFY,
    DRAFT_PREDICT,
    CAMPAIGN_STAGE,
    CAMPAIGN_ADVANCE,
    CAMPAIGN_NOTIFY,
    CAMPAIGN_STAGING_DELETE,
)


def enqueue_task(task_name: str, row_id: int) -> None:
    """Send `task_name(row_id)` once the current transaction commits (at once outside one)."""
    if task_name not in TASK_NAMES:
        raise ValueError(f"{task_name!r} is not one of {TASK_NAMES}")
    transaction.on_commit(functools.partial(send, task_name, row_id))


def send(task_name: str, row_id: int) -> bool:
    """Send the message now. False when the broker is away: beat sends it again later."""
    try:
        current_app.send_task(task_name, args=(row_id,))
    except (KombuError, OSError) as error:
        logger.warning(
            "%s for row %s waits for the broker (%s); beat sends it again",
            task_name,
            row_id,
            type(error).__name__,
        )
        return False
    return True
