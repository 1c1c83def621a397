"""`python manage.py iam_policy app|data-access|trust`: the IAM policies a deployment needs, as JSON.

Built from the configured datastores and the AWS operations imports/aws calls (imports/aws/permissions.py).
Exit 0 with the policy document on standard output; 1 when a datastore is unknown or lacks what the policy
names (its role ARN, datastore ID, or S3 URIs), with what to set.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.models import Datastore
from imports.operations import iam
from imports.validators import validate_s3_uri


class Command(BaseCommand):
    help = (
        "Print an IAM policy document as JSON: `app` for the dashboard's own credentials (every configured "
        "datastore, or those named), `data-access` for a datastore's data access role, `trust` for that "
        "role's trust policy. Exit 0, or 1 naming what to configure first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("document", choices=["app", "data-access", "trust"])
        parser.add_argument(
            "--datastore",
            action="append",
            default=[],
            metavar="NAME",
            help="a datastore by name (repeat for several); required for data-access and trust",
        )
        parser.add_argument(
            "--input",
            action="append",
            default=[],
            metavar="URI",
            help="another input prefix drafts read (s3://bucket/prefix/), besides each datastore's default",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document: str = options["document"]
        names: list[str] = options["datastore"]
        inputs: list[str] = options["input"]
        for uri in inputs:
            try:
                validate_s3_uri(uri)
            except ValidationError as error:
                raise CommandError(
                    f"--input {uri!r}: {' '.join(error.messages)}", returncode=1
                ) from error
        datastores = list(
            Datastore.objects.filter(name__in=names)
            if names
            else Datastore.objects.all()
        )
        unknown = sorted(set(names) - {d.name for d in datastores})
        if unknown:
            known = (
                ", ".join(sorted(Datastore.objects.values_list("name", flat=True)))
                or "none"
            )
            raise CommandError(
                f"--datastore: no datastore named {', '.join(unknown)} (configured: {known}).",
                returncode=1,
            )
        try:
            if document == "app":
                policy = iam.app_policy(
                    datastores,
                    inputs=inputs,
                    checkpoint_uri=settings.AUDIT_CHECKPOINT_S3_URI,
                )
            else:
                if len(datastores) != 1 or len(names) != 1:
                    raise CommandError(
                        f"{document}: name one datastore with --datastore NAME.",
                        returncode=1,
                    )
                policy = (
                    iam.data_access_policy(datastores[0], inputs=inputs)
                    if document == "data-access"
                    else iam.trust_policy(datastores[0])
                )
        except iam.PolicyRefused as refused:
            raise CommandError(str(refused), returncode=1) from refused
        self.stdout.write(json.dumps(policy, indent=2))
