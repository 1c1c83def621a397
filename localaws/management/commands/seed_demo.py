"""Seed localaws and the dashboard with the demo: buckets, a DICOM corpus, a datastore, and one user per role.

Idempotent: what already exists with the same content is left alone, so `make demo` can run it on every start.
It talks only to localaws; it refuses an endpoint that could be real AWS.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from imports.audit.records import audit_record
from imports.datastores import datastore_create
from imports.models import AuditEvent, Datastore
from imports.roles import ADMINISTRATOR, OPERATOR, VIEWER, sync_role_groups
from localaws import democorpus

EMULATOR_DATASTORE_NAME = "demo-datastore"
# A fixed token makes a retried CreateDatastore (say, after a timeout) return the same datastore.
CREATE_DATASTORE_TOKEN = "seed-demo-datastore"
DATASTORE_ROW = {
    "name": "Demo datastore",
    "region": "us-east-1",
    "role_arn": "arn:aws:iam::123456789012:role/DemoHealthImagingImportRole",
    "input_s3_uri": democorpus.INPUT_S3_URI,
    "output_s3_uri": democorpus.OUTPUT_S3_URI,
}
USERS = (
    ("viewer", VIEWER, "viewer-demo"),
    ("operator", OPERATOR, "operator-demo"),
    ("admin", ADMINISTRATOR, "admin-demo"),
)
WAIT_FOR_LOCALAWS_S = 60.0
WAIT_FOR_ACTIVE_S = 30.0
UPLOAD_THREADS = 8
AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def endpoint_refusal(endpoint_url: str | None, *, debug: bool) -> str | None:
    """Why seeding this endpoint is refused, or None when it is safe (a local stand-in)."""
    if not endpoint_url:
        # DEBUG alone is not enough: with no endpoint boto3 goes to real AWS.
        return (
            "AWS_ENDPOINT_URL is not set, so boto3 would reach real AWS. seed_demo only seeds localaws: "
            "start `python manage.py localaws` and set AWS_ENDPOINT_URL=http://127.0.0.1:4566 "
            "(or pass --endpoint-url)."
        )
    host = (urlsplit(endpoint_url).hostname or "").lower()
    if not host:
        return f"AWS endpoint {endpoint_url!r} has no host; expected a URL such as http://127.0.0.1:4566."
    if host == "amazonaws.com" or host.endswith(AWS_HOST_SUFFIXES):
        return (
            f"AWS endpoint {endpoint_url} is real AWS; seed_demo only seeds localaws."
        )
    if _is_loopback(host) or debug:
        return None
    return (
        f"AWS endpoint {endpoint_url} is not a loopback address and DEBUG is off, so it could be a real "
        "AWS account. seed_demo runs only against localaws on this machine (http://127.0.0.1:4566), "
        "or with DJANGO_DEBUG=true for a localaws elsewhere."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = "Seed localaws and the dashboard with demo data (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait-for-localaws",
            action="store_true",
            help=f"wait up to {WAIT_FOR_LOCALAWS_S:.0f} s for localaws to answer",
        )
        parser.add_argument(
            "--endpoint-url",
            default=None,
            help="localaws endpoint (default: $AWS_ENDPOINT_URL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        endpoint = (
            options["endpoint_url"] or os.environ.get("AWS_ENDPOINT_URL") or ""
        ).rstrip("/")
        refusal = endpoint_refusal(endpoint, debug=settings.DEBUG)
        if refusal:
            raise CommandError(refusal)
        self._wait_for_localaws(
            endpoint, WAIT_FOR_LOCALAWS_S if options["wait_for_localaws"] else 0
        )
        s3 = _client("s3", endpoint)
        hi = _client("medical-imaging", endpoint)

        created_buckets = _ensure_buckets(
            s3, [democorpus.INPUT_BUCKET, democorpus.OUTPUT_BUCKET]
        )
        uploaded, corpus_size = _upload_corpus(s3)
        datastore_id, datastore_created = _ensure_emulator_datastore(hi)
        row_note = _ensure_datastore_row(datastore_id)
        user_notes = _ensure_users()

        out = self.stdout.write
        out(
            f"Buckets: {', '.join(created_buckets) + ' created' if created_buckets else 'already there'}."
        )
        if uploaded == corpus_size:
            corpus_note = f"all {corpus_size} objects uploaded"
        elif uploaded:
            corpus_note = (
                f"{uploaded} of {corpus_size} objects uploaded, the rest already there"
            )
        else:
            corpus_note = f"all {corpus_size} objects already there, nothing uploaded"
        out(f"Corpus in {democorpus.INPUT_S3_URI}: {corpus_note}.")
        out(
            f"HealthImaging datastore {EMULATOR_DATASTORE_NAME} ({datastore_id}): "
            + ("created." if datastore_created else "already there.")
        )
        out(f"Dashboard datastore “{DATASTORE_ROW['name']}”: {row_note}.")
        for note in user_notes:
            out(note)
        out("")
        # SITE_URL: `make demo` sets it from PORT, so the address printed is the one served.
        out(self.style.SUCCESS(f"Demo ready: {settings.SITE_URL.rstrip('/')}/"))
        out("Logins (username / password / role):")
        for username, role, password in USERS:
            out(f"  {username:<9} {password:<14} {role}")
        out("")

    def _wait_for_localaws(self, endpoint: str, timeout: float) -> None:
        """Insist on localaws's health answer, so a stray endpoint is never seeded; retry for `timeout` seconds."""
        url = f"{endpoint}/_localaws/health"
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            problem = _health_problem(url)
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"localaws is not answering at {url} ({problem}). Start it with "
                    "`python manage.py localaws`, or pass --wait-for-localaws while it starts."
                )
            if not announced:
                self.stdout.write(f"Waiting for localaws at {endpoint} …")
                announced = True
            time.sleep(0.25)


def _health_problem(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", error))
    if not isinstance(body, dict) or body.get("status") != "ok":
        return "the answer is not localaws's health document"
    return None


def _client(service: str, endpoint: str) -> Any:
    # inject_host_prefix=False: HealthImaging's runtime operations would otherwise prepend "runtime-" to the host.
    make: Any = boto3.client  # boto3-stubs types only literal service names
    return make(
        service,
        endpoint_url=endpoint,
        region_name=DATASTORE_ROW["region"],
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "localaws",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "localaws",
        config=Config(
            inject_host_prefix=False,
            retries={"mode": "standard", "total_max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=UPLOAD_THREADS,
        ),
    )


def _ensure_buckets(s3: Any, names: list[str]) -> list[str]:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    missing = [name for name in names if name not in existing]
    for name in missing:
        s3.create_bucket(Bucket=name)
    return missing


def _upload_corpus(s3: Any) -> tuple[int, int]:
    """Upload the objects that are missing or differ; returns (uploaded, corpus size)."""
    existing: dict[str, tuple[str, int]] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=democorpus.INPUT_BUCKET, Prefix=democorpus.INPUT_PREFIX
    )
    for page in pages:
        for obj in page.get("Contents", []):
            existing[obj["Key"]] = (obj["ETag"], obj["Size"])
    corpus = democorpus.build_corpus()
    # Objects under the prefix that are not in the corpus (an operator's own metadata files) are kept.
    todo = [obj for obj in corpus if existing.get(obj.key) != (obj.etag, len(obj.body))]

    def put(obj: democorpus.DemoObject) -> None:
        s3.put_object(
            Bucket=democorpus.INPUT_BUCKET,
            Key=obj.key,
            Body=obj.body,
            ContentType=obj.content_type,
        )

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(put, todo))
    return len(todo), len(corpus)


def _ensure_emulator_datastore(hi: Any) -> tuple[str, bool]:
    """The demo datastore's ID, created if ListDatastores has none by that name; waits until it is ACTIVE."""
    found = [
        summary
        for page in hi.get_paginator("list_datastores").paginate()
        for summary in page.get("datastoreSummaries", [])
        if summary["datastoreName"] == EMULATOR_DATASTORE_NAME
        and summary["datastoreStatus"] in ("CREATING", "ACTIVE")
    ]
    created = not found
    if found:
        # Oldest first: ListDatastores keeps creation order, so every run picks the same one.
        datastore_id: str = found[0]["datastoreId"]
    else:
        datastore_id = hi.create_datastore(
            datastoreName=EMULATOR_DATASTORE_NAME, clientToken=CREATE_DATASTORE_TOKEN
        )["datastoreId"]
    deadline = time.monotonic() + WAIT_FOR_ACTIVE_S
    while True:
        status = hi.get_datastore(datastoreId=datastore_id)["datastoreProperties"][
            "datastoreStatus"
        ]
        if status == "ACTIVE":
            return datastore_id, created
        if status != "CREATING" or time.monotonic() > deadline:
            raise CommandError(
                f"HealthImaging datastore {datastore_id} is {status}, not ACTIVE; "
                "reset localaws (delete var/localaws) and run seed_demo again."
            )
        time.sleep(0.1)


def _ensure_datastore_row(datastore_id: str) -> str:
    row = Datastore.objects.filter(name=DATASTORE_ROW["name"]).first()
    if row is None:
        datastore_create(actor=None, datastore_id=datastore_id, **DATASTORE_ROW)
        return "created"
    if row.datastore_id == datastore_id:
        return "already there"
    # localaws's state was wiped while the database was kept: point the row at the new datastore.
    previous = row.datastore_id
    row.datastore_id = datastore_id
    row.full_clean()
    with transaction.atomic():
        row.save(update_fields=["datastore_id", "updated_at"])
        audit_record(
            actor=None,
            action=AuditEvent.Action.DATASTORE_CHANGED,
            target=row,
            summary=f"seed_demo pointed “{row.name}” at datastore {datastore_id} (was {previous})",
            details={
                "changes": {"datastore_id": {"before": previous, "after": datastore_id}}
            },
        )
    return f"now points at {datastore_id} (was {previous})"


def _ensure_users() -> list[str]:
    notes = []
    # The role groups come from a data migration, which a flushed database (a transactional test's,
    # say) no longer has; re-creating them is idempotent.
    sync_role_groups(django_apps)
    for username, role, password in USERS:
        group = Group.objects.get(name=role)
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.org"}
        )
        changed = []
        # Checked rather than set blindly: set_password salts anew, so every run would change the row.
        if not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
            changed.append("password reset to the demo password")
        if list(user.groups.all()) != [group]:
            user.groups.set([group])
            changed.append(f"role set to {role}")
        if created:
            notes.append(f"User {username}: created ({role}).")
        elif changed:
            notes.append(f"User {username}: {', '.join(changed)}.")
    return notes
