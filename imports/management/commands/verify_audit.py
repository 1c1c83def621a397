"""`python manage.py verify_audit`: is the audit trail whole? Exit 0 if so, 1 with the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from imports.audit.records import audit_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain and report the first event that does not fit, "
        "or that the chain is whole; also check that the append-only triggers are installed "
        "and that nothing outside the tests may empty the trail."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_verify()
        if report.broken is not None:
            link = report.broken
            raise CommandError(
                f"The audit trail is broken at event {link.id_and_time()}: "
                + "; and ".join(link.problems)
                + f". The {report.events - 1} event(s) before it are intact."
            )
        if report.events == 0:
            # A dashboard in use always has events (the first sign-in is one): an empty table was emptied.
            raise CommandError(
                "The audit trail is empty: nothing is left to verify, which is a failure. Every "
                "sign-in is recorded, so a dashboard that has been used has events; compare with "
                "the last hash noted earlier."
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
        self.stdout.write(
            f"The audit trail is whole: {report.events} event(s), the last hash is "
            f"{report.last_hash}. Note the last hash down: an event removed from the end of the "
            "trail is found only by comparing it with a hash noted earlier."
        )
