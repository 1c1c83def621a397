"""What the operations endpoints read, and what periodic tasks hold.

Heartbeats of the processes that have no request to answer, and leases that let one run of a periodic task
at a time (imports/jobs/leases.py).
"""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """The last time a process showed it was alive; one row per process kind ("beat").

    Beat sends a heartbeat task on its schedule and a worker writes this row, so a fresh row says both
    that beat schedules and that a worker consumes the queue.
    """

    name = models.CharField(max_length=32, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class TaskLease(models.Model):
    """One run of a periodic task at a time, across every worker process and machine.

    A run holds the lease until `until`; another run finds it held and returns at once. A run killed with
    its lease held is replaced once `until` has passed, so `until` is set past the task's time limit.
    """

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=36, blank=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held until {self.until:%Y-%m-%d %H:%M:%S}"
