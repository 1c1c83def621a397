"""What the `import_job` subcommands share: the account that runs them, the datastore and input they name, the
prefix's current scan (scanning it first when needed), a mappings file read, and the problem and prediction lines.

Apart from the command module so that each stays short; nothing here is a command (Django runs only
imports/management/commands/).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from imports.drafts import prediction
from imports.mappings.csvfile import CsvRefused, mappings_read_csv
from imports.mappings.rules import Mapping, Problem
from imports.models import Datastore, Scan
from imports.scanning import control, run
from imports.scanning.lookup import scan_is_current
from imports.validators import (
    split_s3_uri,
    validate_job_name,
    validate_output_s3_uri,
    validate_s3_uri,
)


def _actor(name: str | None) -> AbstractBaseUser:
    """The account that runs this command: --user NAME, else the OS user's name; an active account."""
    given = name is not None
    if not given:
        try:
            name = getpass.getuser()
        except (OSError, KeyError) as error:
            raise CommandError(
                "Cannot tell which OS user runs this command: give --user NAME (an account's "
                "user name).",
                returncode=1,
            ) from error
    user_model = get_user_model()
    user = user_model._default_manager.filter(
        **{user_model.USERNAME_FIELD: name}
    ).first()
    if user is None:
        raise CommandError(
            f"--user {name}: no account has that user name."
            if given
            else f"No account is named “{name}”, the OS user running this command: give "
            "--user NAME (an account's user name) to say who runs it.",
            returncode=1,
        )
    if not user.is_active:
        raise CommandError(f"The account “{name}” is not active.", returncode=1)
    return user


def _scan_actor(datastore: Datastore, uri: str) -> AbstractBaseUser:
    """Whom a scan that `corrections` starts is recorded as: the OS user's account (it takes no --user)."""
    try:
        return _actor(None)
    except CommandError:
        raise CommandError(
            f"{uri} must be scanned first, and no account is named after the OS user running this command to "
            f'record the scan as: scan it with python manage.py scan {uri} --datastore "{datastore.name}", then '
            "run this again.",
            returncode=1,
        ) from None


def _write_actor() -> AbstractBaseUser:
    """Whom `corrections --write` is audited as: the OS user's account (the command takes no --user)."""
    try:
        return _actor(None)
    except CommandError:
        raise CommandError(
            "--write records the write in the audit trail as the account named after the OS user running this "
            "command, and there is none (or it is not active): run it as a user who has an account. Nothing "
            "was written.",
            returncode=1,
        ) from None


def _datastore(name: str) -> Datastore:
    datastore = Datastore.objects.filter(name=name, enabled=True).first()
    if datastore is None:
        known = ", ".join(
            Datastore.objects.filter(enabled=True).values_list("name", flat=True)
        )
        raise CommandError(
            f"No enabled datastore is named “{name}” (known: {known or 'none'}).",
            returncode=1,
        )
    return datastore


def _input_uri(datastore: Datastore, given: str | None) -> str:
    uri = given or datastore.input_s3_uri
    try:
        validate_s3_uri(uri)
    except ValidationError as error:
        raise CommandError(
            "--input: " + " ".join(error.messages), returncode=1
        ) from error
    # metadataFilePath is relative to the input URI, which is therefore a folder.
    return uri if uri.endswith("/") else uri + "/"


def _option_problems(options: dict[str, Any]) -> list[Problem]:
    problems = []
    for option, value, validate in (
        ("--output", options.get("output"), validate_output_s3_uri),
        ("--name", options.get("name"), validate_job_name),
    ):
        if value:
            try:
                validate(value)
            except ValidationError as error:
                problems += [
                    Problem("error", None, option, "invalid_option", message)
                    for message in error.messages
                ]
    return problems


def _read_mappings(path: Path) -> list[Mapping] | Problem:
    """The CSV's rows (their fields are checked by the validation), or why the file cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return Problem(
            "error",
            None,
            "",
            "csv_invalid",
            f"{path} cannot be read: {error.strerror}.",
        )
    try:
        return mappings_read_csv(data, check_fields=False)
    except CsvRefused as refused:
        return Problem("error", None, "", "csv_invalid", str(refused))


def _current_scan(
    datastore: Datastore,
    uri: str,
    log: Any,
    *,
    actor: AbstractBaseUser | Callable[[], AbstractBaseUser],
) -> Scan:
    """The completed scan of the prefix, scanning it here first (as `actor`, or who it returns) if it has none
    or it changed since."""
    bucket, prefix = split_s3_uri(uri)
    while True:
        running = Scan.objects.filter(
            bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
        ).first()
        if running is None:
            break
        log.write(f"Waiting for the running scan of {uri} (scan {running.pk})…")
        time.sleep(2)
    latest = (
        Scan.objects.filter(bucket=bucket, prefix=prefix, status=Scan.Status.COMPLETED)
        .order_by("-finished_at", "-id")
        .first()
    )
    if latest is not None and scan_is_current(scan=latest):
        return latest
    log.write(f"Scanning {uri} first (only new or changed objects are read)…")
    scan, _ = control.scan_start(
        actor=actor() if callable(actor) else actor,
        bucket=bucket,
        prefix=prefix,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
        origin=Scan.Origin.CLI,
    )
    result = run.scan_run(scan_id=scan.pk)
    if result is None or result.status != Scan.Status.COMPLETED:
        reason = result.error if result is not None else "another process took it"
        raise CommandError(
            f"The scan of {uri} did not complete: {reason}", returncode=1
        )
    return result


def _print_prediction(
    command: BaseCommand,
    result: prediction.Prediction,
    datastore: Datastore,
    *,
    as_json: bool,
    failed: bool,
) -> None:
    try:
        if as_json:
            for series in result.series:
                command.stdout.write(json.dumps(series.as_json()))
        else:
            for line in prediction.prediction_table(
                result, datastore_name=datastore.name
            ):
                command.stdout.write(line)
        command.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1 if failed else 0)


def _print_problems(
    command: BaseCommand,
    problems: list[Problem],
    *,
    as_json: bool,
    summary: bool = True,
) -> None:
    try:
        for p in problems:
            if as_json:
                line = json.dumps(
                    {
                        "severity": p.severity,
                        "row": p.row,
                        "field": p.field,
                        "code": p.code,
                        "message": p.message,
                    }
                )
            else:
                where = f"row {p.row}" if p.row is not None else "all rows"
                field = f" {p.field}" if p.field else ""
                line = f"{p.severity}: {where}{field}: {p.message} [{p.code}]"
            command.stdout.write(line)
        if summary and not as_json:
            errors = sum(p.severity == "error" for p in problems)
            warnings = len(problems) - errors
            command.stdout.write(
                f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}: "
                + (
                    "the mappings can be submitted."
                    if not errors
                    else "fix the errors first."
                )
            )
        command.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do. Python would otherwise report
        # the pipe again when it flushes stdout at exit, so point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1 if any(p.severity == "error" for p in problems) else 0)
