"""Leases: one run of a periodic jobs task at a time, across every worker process and machine.

Beat sends `jobs_poll` every 2 s. While HealthImaging browns out, one poll can take its whole time limit, and
without a lease every worker process ended up polling, while jobs confirmed meanwhile waited. A run that finds
the lease held returns at once. The claim is one conditional UPDATE, atomic on PostgreSQL and SQLite alike;
a run killed while holding it is replaced once the lease has run out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from imports.models import TaskLease

# Before any run: the lease is free.
_FREE = datetime(2000, 1, 1, tzinfo=UTC)


@contextmanager
def lease_held(name: str, *, seconds: float) -> Iterator[bool]:
    """True inside when this run holds the lease `name` for up to `seconds`; False when another run does.

    The lease is given back on the way out, whatever happens inside.
    """
    holder = str(uuid.uuid4())
    now = timezone.now()
    try:
        with transaction.atomic():
            TaskLease.objects.get_or_create(name=name, defaults={"until": _FREE})
    except IntegrityError:
        pass  # another run created it at the same moment: it exists now
    claimed = TaskLease.objects.filter(name=name, until__lt=now).update(
        holder=holder, until=now + timedelta(seconds=seconds)
    )
    try:
        yield bool(claimed)
    finally:
        if claimed:
            TaskLease.objects.filter(name=name, holder=holder).update(
                until=timezone.now()
            )
