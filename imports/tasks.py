"""Celery tasks: adapters that take primary keys and call the services."""

from __future__ import annotations

from celery import shared_task

from imports.scanning import run


@shared_task(
    name="imports.scan_prefix",
    acks_late=True,
    soft_time_limit=6 * 60 * 60,
    time_limit=6 * 60 * 60 + 300,
)
def scan_prefix(scan_id: int) -> None:
    # scan_run claims the scan with a conditional UPDATE, so a redelivered message does nothing.
    run.scan_run(scan_id=scan_id)


@shared_task(name="imports.scans_recover_stalled", ignore_result=True)
def scans_recover_stalled() -> None:
    # Imported here: the scan control module enqueues the tasks of this module.
    from imports.scanning.control import scans_recover_stalled

    scans_recover_stalled()
