"""`python manage.py campaign plan|start|pause|resume|cancel|status|clean`: archive campaigns from a shell (issue 21).

    campaign plan --datastore NAME --input URI [--input URI ...] [--mappings FILE] [--max-files N]
                  [--max-bytes N] [--staging URI] [--json]
    campaign start ID
    campaign pause|resume|cancel ID
    campaign status ID [--wait] [--json]
    campaign clean ID

`plan` works from the latest completed scan of each input (exit 1, saying so, when there is none), stores the plan
and prints a table; with --json one object per planned job (`job`, `input`, `files`, `bytes`, `mappings`,
`staged`), then `{"campaign": ID, "jobs": n, "objects": n, "staged_objects": n}`. Nothing runs until `start`,
which is refused (exit 1) when a source changed since its scan. `status` prints `{"campaign", "state", "jobs",
"objects", "imported", "failed", "skipped", "not_imported", "unaccounted"}` with --json; --wait advances the
campaign until it ends and exits 0 only when it is Completed (every object accounted for), 1 otherwise. `clean`
deletes an ended campaign's staging copies (exit 1 when it has not ended, or some copies were kept).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.campaigns import accounting, cleanup, services
from imports.management.import_job_shared import _datastore
from imports.mappings.csvfile import CSV_COLUMNS, CsvRefused, mappings_read_csv
from imports.mappings.rules import Mapping
from imports.models import Campaign, CampaignJob
from imports.units import bytes_format


class Command(BaseCommand):
    help = "Plan an archive into quota-sized import jobs, run them, and account for every object."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        plan = sub.add_parser(
            "plan", help="Plan a campaign from the scans of its inputs (nothing runs)."
        )
        plan.add_argument("--datastore", required=True, help="the datastore's name")
        plan.add_argument(
            "--input",
            action="append",
            required=True,
            help="a source prefix (s3://bucket/folder/); repeatable",
        )
        plan.add_argument(
            "--mappings",
            type=Path,
            help="CSV with the header "
            + ",".join(CSV_COLUMNS)
            + "; each path relative to an --input",
        )
        plan.add_argument(
            "--max-files",
            type=int,
            help="files per job (default: the datastore's quota)",
        )
        plan.add_argument(
            "--max-bytes",
            type=int,
            help="bytes per job (default: the datastore's quota)",
        )
        plan.add_argument(
            "--staging", help="where staged copies go (s3://bucket/prefix/)"
        )
        plan.add_argument(
            "--json",
            action="store_true",
            help="one JSON object per job, then the totals",
        )
        for name, text in (
            ("start", "Start a planned campaign."),
            ("pause", "Hand no further job to submission."),
            ("resume", "Resume a paused campaign."),
            ("cancel", "Submit nothing more; jobs at AWS run to their end."),
        ):
            sub.add_parser(name, help=text).add_argument("id", type=int)
        sub.add_parser(
            "clean", help="Delete an ended campaign's staging copies (audited)."
        ).add_argument("id", type=int)
        status = sub.add_parser("status", help="What became of the campaign's objects.")
        status.add_argument("id", type=int)
        status.add_argument(
            "--wait", action="store_true", help="advance it until it ends"
        )
        status.add_argument("--json", action="store_true", help="one JSON object")
        status.add_argument(
            "--interval",
            type=float,
            default=5.0,
            help="seconds between checks with --wait",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    # --- plan ---

    def _plan(self, options: dict[str, Any]) -> None:
        datastore = _datastore(options["datastore"])
        mappings = self._mappings(options["mappings"]) if options["mappings"] else []
        try:
            planned = services.campaign_plan(
                actor=None,
                datastore=datastore,
                inputs=options["input"],
                mappings=mappings,
                max_files=options["max_files"],
                max_bytes=options["max_bytes"],
                staging_uri=options["staging"] or "",
            )
        except services.CampaignRefused as refused:
            raise CommandError(
                "The campaign cannot be planned; nothing was stored:\n"
                + "\n".join(f"  {p}" for p in refused.problems),
                returncode=1,
            ) from None
        campaign, plan = planned.campaign, planned.plan
        if options["json"]:
            for job in plan.jobs:
                self.stdout.write(
                    json.dumps(
                        {
                            "job": job.number,
                            "input": job.input_uri,
                            "files": job.files,
                            "bytes": job.bytes,
                            "mappings": len(job.mappings),
                            "staged": len(job.copies),
                        }
                    )
                )
            self.stdout.write(
                json.dumps(
                    {
                        "campaign": campaign.pk,
                        "jobs": len(plan.jobs),
                        "objects": campaign.object_count,
                        "staged_objects": plan.staged_objects,
                    }
                )
            )
            return
        self.stdout.write(
            f"{'job':>5}  {'files':>7}  {'bytes':>10}  {'folders':>7}  {'mappings':>8}  {'staged':>7}  input"
        )
        for job in plan.jobs:
            self.stdout.write(
                f"{job.number:>5}  {job.files:>7,}  {bytes_format(job.bytes):>10}  {job.folders:>7,}  "
                f"{len(job.mappings):>8,}  {len(job.copies):>7,}  {job.input_uri}"
            )
        self.stdout.write(
            f"total  {sum(j.files for j in plan.jobs):>7,}  {bytes_format(sum(j.bytes for j in plan.jobs)):>10}  "
            f"{'':>7}  {sum(len(j.mappings) for j in plan.jobs):>8,}  {plan.staged_objects:>7,}"
        )
        if plan.staged_objects:
            days = settings.CAMPAIGN_STAGING_DAYS
            self.stdout.write(
                f"Staging: {plan.staged_objects:,} CopyObject requests, {bytes_format(plan.staged_bytes)} copied, "
                f"{plan.storage_gb_days(days):,.2f} GB-days if the copies stay {days:g} days."
            )
        if plan.skipped:
            self.stdout.write(
                f"Skipped, not copied: {len(plan.skipped):,} files that are not DICOM."
            )
        self.stdout.write(
            f"Campaign {campaign.pk}: {len(plan.jobs):,} jobs for {campaign.object_count:,} objects. Nothing runs "
            f"until: python manage.py campaign start {campaign.pk}"
        )

    def _mappings(self, path: Path) -> list[Mapping]:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(
                f"--mappings {path} cannot be read: {error.strerror}.", returncode=1
            ) from None
        try:
            return mappings_read_csv(data)
        except CsvRefused as refused:
            lines = [f"--mappings {path}: {refused}"] + [
                f"  row {p.row}, {p.field}: {p.message}" for p in refused.problems
            ]
            raise CommandError("\n".join(lines), returncode=1) from None

    # --- the rest ---

    def _campaign(self, pk: int) -> Campaign:
        campaign = Campaign.objects.filter(pk=pk).first()
        if campaign is None:
            raise CommandError(f"No campaign has the ID {pk}.", returncode=1)
        return campaign

    def _start(self, options: dict[str, Any]) -> None:
        campaign = self._campaign(options["id"])
        try:
            started = services.campaign_start(actor=None, campaign_id=campaign.pk)
        except services.CampaignRefused as refused:
            raise CommandError("\n".join(refused.problems), returncode=1) from None
        if not started:
            campaign.refresh_from_db()
            self.stdout.write(
                f"Campaign {campaign.pk} was already started (it is {campaign.get_state_display().lower()}); "
                "nothing was submitted again."
            )
            return
        staged = CampaignJob.objects.filter(campaign=campaign, staged=True).count()
        self.stdout.write(
            f"Campaign {campaign.pk} started: {campaign.jobs.count():,} jobs ({staged:,} staged first). "
            f"Follow it with: python manage.py campaign status {campaign.pk} --wait"
        )

    def _change(self, options: dict[str, Any], change: Any, done: str) -> None:
        campaign = self._campaign(options["id"])
        if not change(actor=None, campaign_id=campaign.pk):
            raise CommandError(
                f"Campaign {campaign.pk} is {campaign.get_state_display().lower()}: it cannot be {done} now.",
                returncode=1,
            )
        self.stdout.write(f"Campaign {campaign.pk} {done}.")

    def _pause(self, options: dict[str, Any]) -> None:
        self._change(options, services.campaign_pause, "paused")

    def _resume(self, options: dict[str, Any]) -> None:
        self._change(options, services.campaign_resume, "resumed")

    def _cancel(self, options: dict[str, Any]) -> None:
        self._change(options, services.campaign_cancel, "cancelled")

    def _clean(self, options: dict[str, Any]) -> None:
        campaign = self._campaign(options["id"])
        try:
            done = cleanup.campaign_staging_delete(campaign_id=campaign.pk, actor=None)
        except cleanup.CleanupRefused as refused:
            raise CommandError(str(refused), returncode=1) from None
        self.stdout.write(
            f"Campaign {campaign.pk}: {done.deleted:,} staging copies deleted"
            + (
                f", {done.failed + done.refused:,} kept (see the campaign page)"
                if done.failed + done.refused
                else ""
            )
            + "."
        )
        if done.failed or done.refused:
            raise CommandError(
                "Some staging copies could not be deleted; run it again to retry them.",
                returncode=1,
            )

    def _status(self, options: dict[str, Any]) -> None:
        campaign = self._campaign(options["id"])
        if options["wait"]:
            while True:
                accounting.campaign_advance(campaign_id=campaign.pk)
                campaign.refresh_from_db()
                if (
                    campaign.ended_at is not None
                    or campaign.state == Campaign.State.PLANNED
                ):
                    break
                time.sleep(options["interval"])
        counts = accounting.campaign_counts(campaign=campaign)
        if options["json"]:
            self.stdout.write(json.dumps(counts))
        else:
            self.stdout.write(
                f"Campaign {campaign.pk}: {campaign.get_state_display()}. {counts['jobs']:,} jobs, "
                f"{counts['objects']:,} objects: {counts['imported']:,} imported, {counts['failed']:,} failed, "
                f"{counts['skipped']:,} skipped, {counts['not_imported']:,} not imported, "
                f"{counts['unaccounted']:,} not accounted for."
            )
        if options["wait"] and campaign.state != Campaign.State.COMPLETED:
            raise CommandError(
                f"Campaign {campaign.pk} ended {campaign.get_state_display().lower()}, not completed.",
                returncode=1,
            )
