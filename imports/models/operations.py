"""What the operations endpoints read: heartbeats of the processes that have no request to answer."""

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
