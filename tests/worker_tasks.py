"""A task that only the tests' Celery worker loads (celery worker -I tests.worker_tasks)."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task


@shared_task(name="tests.write_marker")
def write_marker(path: str, text: str) -> None:
    Path(path).write_text(text)
