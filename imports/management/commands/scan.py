"""`python manage.py scan s3://bucket/prefix/ [--json] [--rest] [--queue] [--inventory MANIFEST]`: scans, from a shell.

Without --queue the scan runs in this process. With it, the scan is handed to the Celery workers (the `scan`
queue), where it fans out into chunk tasks over every worker process (imports.scanning.fanout), and the command
waits for it to end, then prints the same summary or JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.models import Datastore, ObjectHeader, Scan
from imports.scanning import control, run
from imports.scanning.tally import scan_tally
from imports.units import bytes_format
from imports.validators import split_s3_uri, validate_s3_uri


class Command(BaseCommand):
    help = "Scan an S3 prefix: read every DICOM header (ranged reads), check JSON metadata files, index studies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uri", help="s3://bucket/prefix/")
        parser.add_argument(
            "--datastore", help="name of the datastore whose region and quotas apply"
        )
        parser.add_argument(
            "--region",
            help="AWS region of the bucket (default: the datastore's, else AWS_DEFAULT_REGION)",
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON line per object"
        )
        parser.add_argument(
            "--rest",
            action="store_true",
            help="read only the objects the last incomplete scan of this prefix could not read",
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="run the scan on the Celery workers instead of in this process, wait for it to end, "
            "then print the same summary (or --json lines)",
        )
        parser.add_argument(
            "--inventory",
            metavar="MANIFEST",
            help="list the prefix from an S3 Inventory instead of ListObjectsV2: the s3:// URI of its "
            "manifest.json (CSV format, with the Size and ETag fields)",
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help=argparse.SUPPRESS
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            validate_s3_uri(options["uri"])
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        datastore = None
        if options["datastore"]:
            datastore = Datastore.objects.filter(name=options["datastore"]).first()
            if datastore is None:
                raise CommandError(f"No datastore is named “{options['datastore']}”.")
        region = options["region"] or (
            datastore.region if datastore else settings.AWS_DEFAULT_REGION
        )
        bucket, prefix = split_s3_uri(options["uri"])
        on_workers = options["queue"]
        inventory = options["inventory"] or ""
        if inventory and options["rest"]:
            raise CommandError(
                "--inventory lists the prefix anew; --rest reads what the last scan left. Use one."
            )
        if inventory:
            try:
                validate_s3_uri(inventory)
            except ValidationError as error:
                raise CommandError(
                    f"--inventory: {' '.join(error.messages)}"
                ) from error
        if options["rest"]:
            scan = self._read_rest(bucket, prefix, enqueue=on_workers)
        else:
            scan = self._start(
                bucket,
                prefix,
                region,
                datastore,
                enqueue=on_workers,
                inventory=inventory,
            )
        if on_workers:
            result = self._wait(scan, interval=options["interval"])
        else:
            ran = run.scan_run(scan_id=scan.pk)
            assert ran is not None  # we queued it, so we claim it
            result = ran
        try:
            if options["json"]:
                self._print_objects(result)
            else:
                self._print_summary(result)
            self.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop printing quietly, as Unix tools do. The scan is
            # already recorded; stdout now points at /dev/null so the flush at exit cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        if result.status != Scan.Status.COMPLETED:
            raise CommandError(
                result.error or f"The scan ended {result.get_status_display().lower()}."
            )

    def _wait(self, scan: Scan, *, interval: float) -> Scan:
        """Until the workers have ended the scan; progress on stderr, so stdout stays the summary alone."""
        self.stderr.write(
            f"Scan {scan.pk} of {scan.uri} is queued on the workers; waiting for it to end "
            "(Ctrl-C stops waiting, not the scan)."
        )
        reported = -1
        while True:
            scan.refresh_from_db()
            if not scan.is_active:
                return scan
            if scan.objects_done != reported and scan.status == Scan.Status.RUNNING:
                reported = scan.objects_done
                # The workers read it in chunks (imports.scanning.fanout), several at once.
                chunks = (
                    f" ({scan.chunks_ended:,} of {scan.chunks_total:,} chunks ended)"
                    if scan.chunks_total
                    else ""
                )
                self.stderr.write(
                    f"  {scan.objects_done:,} of {scan.objects_listed:,} objects read{chunks}"
                )
            time.sleep(interval)

    def _read_rest(self, bucket: str, prefix: str, *, enqueue: bool = False) -> Scan:
        scan = (
            Scan.objects.filter(
                bucket=bucket, prefix=prefix, status=Scan.Status.INCOMPLETE
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if scan is None:
            raise CommandError(
                f"No incomplete scan of s3://{bucket}/{prefix} to read the rest of."
            )
        if not control.scan_read_rest(scan=scan, actor=None, enqueue=enqueue):
            raise CommandError(
                f"Scan {scan.pk} cannot read the rest now: another scan of its prefix is running."
            )
        return scan

    def _start(
        self,
        bucket: str,
        prefix: str,
        region: str,
        datastore: Datastore | None,
        *,
        enqueue: bool = False,
        inventory: str = "",
    ) -> Scan:
        scan, created = control.scan_start(
            actor=None,
            bucket=bucket,
            prefix=prefix,
            region=region,
            datastore=datastore,
            enqueue=enqueue,
            origin=Scan.Origin.CLI,
            inventory_uri=inventory,
        )
        if not created:
            raise CommandError(
                f"A scan of {scan.uri} is already running (scan {scan.pk}); try again when it ends."
            )
        return scan

    def _print_objects(self, scan: Scan) -> None:
        headers = ObjectHeader.objects.of_scan(scan).order_by("key")
        for header in headers.iterator(chunk_size=2000):
            line = {
                "key": header.key,
                "kind": header.kind,
                "status": header.status,
                "study_uid": header.study_instance_uid or None,
                "series_uid": header.series_instance_uid or None,
                "sop_uid": header.sop_instance_uid or None,
                "modality": header.modality or None,
                "bytes_read": header.bytes_read,
                "requests": header.requests,
                "error": header.error or None,
            }
            self.stdout.write(json.dumps(line))

    def _print_summary(self, scan: Scan) -> None:
        studies = scan.studies.count()
        series = sum(
            study.series.count() for study in scan.studies.prefetch_related("series")
        )
        flagged = scan.studies.exclude(variants={}).count()
        tally = scan_tally(scan=scan)
        write = self.stdout.write
        write(f"Scan of {scan.uri}: {scan.get_status_display()}")
        if scan.inventory_uri:
            made = (
                scan.inventory_created_at.strftime("%Y-%m-%d %H:%M UTC")
                if scan.inventory_created_at
                else "an unknown time"
            )
            write(
                f"  listed    from the S3 Inventory {scan.inventory_uri}, made {made}"
            )
        if scan.datastore is not None:
            write(f"  datastore {scan.datastore.name} ({scan.region})")
        write(
            f"  objects   {scan.objects_listed:,} ({scan.objects_cached:,} from the cache): "
            f"{tally.dicom_text}, {tally.problems_text}"
        )
        write(f"  JSON      {tally.json_text}")
        if scan.objects_pending:
            write(
                f"  not read  {scan.objects_pending:,} (S3 did not answer; rerun with --rest)"
            )
        write(
            f"  studies   {studies:,} ({flagged:,} with inconsistent attributes), series {series:,}"
        )
        write(
            f"  requests  {scan.requests:,} GETs, {bytes_format(scan.bytes_read)} read of {bytes_format(scan.bytes_total)}"
        )
        write(
            f"  quotas    files {scan.objects_listed:,} of {scan.file_limit:,}, "
            f"size {bytes_format(scan.bytes_total)} of {bytes_format(scan.byte_limit)}, "
            f"folders {scan.folders:,} of {Scan.MAX_FOLDERS:,}"
        )
