"""`python manage.py verify_audit`: is the audit trail whole? Exit 0 if so, 1 with the first broken link.

`--checkpoints FILE` (a file of checkpoints, or a log holding them) or `--checkpoints s3://bucket/prefix/`
also compares the trail with the signed checkpoints of its head (imports/audit/checkpoints.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.audit.checkpoints import Checkpoint, CheckpointError, checkpoints_parse
from imports.audit.records import audit_verify
from imports.operations.audit_checkpoints import checkpoints_read_s3


def _read_checkpoints(source: str) -> list[Checkpoint]:
    if source.startswith("s3://"):
        return checkpoints_read_s3(source)
    try:
        with Path(source).open(encoding="utf-8", errors="replace") as lines:
            return checkpoints_parse(lines, source=source)
    except OSError as error:
        raise CheckpointError(f"Cannot read {source}: {error.strerror}") from error


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's keyed hash chain and report the first event that does not fit, "
        "or that the chain is whole; also check that the append-only triggers are installed, that "
        "nothing outside the tests may empty the trail and, with --checkpoints, that the trail "
        "still reaches every checkpoint of its head."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoints",
            metavar="FILE|S3_URI",
            help=(
                "A file of checkpoints (or a log holding `audit-checkpoint` lines), or an s3:// "
                "prefix holding them (AUDIT_CHECKPOINT_S3_URI): fail when a checkpointed event is "
                "gone or hashes differently."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoints: list[Checkpoint] = []
        if options["checkpoints"]:
            try:
                checkpoints = _read_checkpoints(options["checkpoints"])
            except CheckpointError as error:
                raise CommandError(f"{error}.") from error
        report = audit_verify(checkpoints=checkpoints)
        if report.broken is not None:
            link = report.broken
            raise CommandError(
                f"The audit trail is broken at event {link.id_and_time()}: "
                + "; and ".join(link.problems)
                + f". The {report.events - 1} event(s) before it are intact."
            )
        if report.checkpoint_problems:
            raise CommandError(
                f"The hash chain of {report.events} event(s) is whole, but it no longer agrees "
                f"with {len(report.checkpoint_problems)} of the {len(checkpoints)} checkpoint(s): "
                + "; ".join(report.checkpoint_problems)
                + "."
            )
        if report.events == 0:
            # A dashboard in use always has events (the first sign-in is one): an empty table was emptied.
            raise CommandError(
                "The audit trail is empty: nothing is left to verify, which is a failure. Every "
                "sign-in is recorded, so a dashboard that has been used has events; compare with "
                "the checkpoints (--checkpoints) and the last hash noted earlier."
            )
        if report.missing_triggers:
            raise CommandError(
                f"The hash chain of {report.events} event(s) is whole, but the append-only "
                f"triggers {', '.join(report.missing_triggers)} are missing or disabled: "
                "nothing stops an UPDATE or DELETE of audit rows. Reinstall them "
                "(imports.audit.guard.guards_install) and run verify_audit again."
            )
        if report.weakened_guards:
            raise CommandError(
                f"The hash chain of {report.events} event(s) is whole, but "
                + " and ".join(report.weakened_guards)
                + ": outside the tests nothing may empty the audit table. Reinstall the triggers "
                "(imports.audit.guard.guards_install, which also drops the table) and run "
                "verify_audit again."
            )
        checked = (
            f", and it reaches all {len(checkpoints)} checkpoint(s)"
            if checkpoints
            else ""
        )
        self.stdout.write(
            f"The audit trail is whole: {report.events} event(s), the last hash is "
            f"{report.last_hash}{checked}. Without checkpoints, an event removed from the end of "
            "the trail is found only by comparing it with a hash noted earlier."
        )
