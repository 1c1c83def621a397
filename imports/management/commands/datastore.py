"""`python manage.py datastore add|list|check`: the admin's datastore screens, for scripted set-up."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports import datastores
from imports.models import Datastore


class Command(BaseCommand):
    help = "Add, list and check HealthImaging datastores."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser(
            "add", help="Add a datastore (same validation as the admin)."
        )
        add.add_argument("--name", required=True)
        add.add_argument("--region", required=True)
        add.add_argument("--datastore-id", required=True)
        add.add_argument("--role-arn", required=True)
        add.add_argument(
            "--input", required=True, help="default input S3 URI, s3://bucket/prefix/"
        )
        add.add_argument("--output", required=True, help="output S3 URI, ending with /")
        add.add_argument("--input-owner-account-id", default="")
        add.add_argument("--max-files-per-job", type=int, default=None)
        add.add_argument("--max-bytes-per-job", type=int, default=None)
        add.add_argument("--disabled", action="store_true")
        sub.add_parser("list", help="List datastores.")
        check = sub.add_parser(
            "check", help="Check a datastore's connection, as the admin action does."
        )
        check.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _add(self, options: dict[str, Any]) -> None:
        fields: dict[str, Any] = {
            "name": options["name"],
            "region": options["region"],
            "datastore_id": options["datastore_id"],
            "role_arn": options["role_arn"],
            "input_s3_uri": options["input"],
            "output_s3_uri": options["output"],
            "input_owner_account_id": options["input_owner_account_id"],
            "enabled": not options["disabled"],
        }
        for limit in ("max_files_per_job", "max_bytes_per_job"):
            if options[limit] is not None:
                fields[limit] = options[limit]
        try:
            datastore = datastores.datastore_create(actor=None, **fields)
        except ValidationError as error:
            lines = [
                f"  {_option_name(field)}: {' '.join(msgs)}"
                for field, msgs in error.message_dict.items()
            ]
            raise CommandError(
                "The datastore was not saved:\n" + "\n".join(lines)
            ) from error
        self.stdout.write(self.style.SUCCESS(f"Added datastore “{datastore.name}”."))

    def _list(self, options: dict[str, Any]) -> None:
        rows = [("NAME", "REGION", "DATASTORE ID", "INPUT", "OUTPUT", "ENABLED")]
        for d in Datastore.objects.all():
            rows.append(
                (
                    d.name,
                    d.region,
                    d.datastore_id,
                    d.input_s3_uri,
                    d.output_s3_uri,
                    "yes" if d.enabled else "no",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )

    def _check(self, options: dict[str, Any]) -> None:
        try:
            datastore = Datastore.objects.get(name=options["name"])
        except Datastore.DoesNotExist:
            names = (
                ", ".join(Datastore.objects.values_list("name", flat=True))
                or "none yet"
            )
            raise CommandError(
                f"No datastore is named “{options['name']}”. Known: {names}."
            ) from None
        results = datastores.datastore_check_connection(datastore=datastore, actor=None)
        for result in results:
            mark = self.style.SUCCESS("ok  ") if result.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {result.name}: {result.message}")
        if not all(result.ok for result in results):
            raise CommandError(f"“{datastore.name}” is not ready for imports.")


_OPTION_NAMES = {
    "input_s3_uri": "--input",
    "output_s3_uri": "--output",
    "datastore_id": "--datastore-id",
    "role_arn": "--role-arn",
}


def _option_name(field: str) -> str:
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))
