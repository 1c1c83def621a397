"""Rows every database stores: what a column cannot hold becomes the object's reason, never the scan's end.

PostgreSQL's text cannot hold U+0000 and its JSON cannot hold a lone surrogate or a number beyond a double;
SQLite's driver cannot encode a lone surrogate, and its JSON check refuses infinity (silently, under
`ignore_conflicts`). `header_storable` is the one choke point a read result passes before it is written: it
puts U+FFFD in place of such characters, null in place of such numbers, and says so in the row's reason.
`headers_create` is the fallback for whatever still fails: the batch is written row by row, and a row the
database refuses is replaced by a row that records only that it could not be stored.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import DataError, IntegrityError, transaction
from django.db.models import CharField, TextField

from imports.aws import client as aws
from imports.dicom.sniff import sniff_kind
from imports.models import ObjectHeader
from imports.storable_text import REPLACEMENT, text_storable
from imports.storable_text import unstorable as _unstorable

logger = logging.getLogger(__name__)

# The DICOM attribute behind each text column, for a reason that names it (never its value: PHI).
_KEYWORDS = {
    "transfer_syntax_uid": "TransferSyntaxUID",
    "sop_class_uid": "SOPClassUID",
    "sop_instance_uid": "SOPInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "study_description": "StudyDescription",
    "accession_number": "AccessionNumber",
    "modality": "Modality",
    "series_description": "SeriesDescription",
}
_JSON_COLUMNS = ("json_document", "json_study_uids", "json_series_uids", "json_errors")
# What a database answers for a value it cannot take: psycopg's DataError (NUL, bad JSON), SQLite's
# IntegrityError (its JSON_VALID check), and the drivers' UnicodeEncodeError (a lone surrogate).
REFUSED = (DataError, IntegrityError, UnicodeEncodeError, ValueError)


def json_storable(value: Any) -> tuple[Any, bool]:
    """A JSON value every database stores, and whether anything had to change.

    Strings and keys get U+FFFD for NUL and lone surrogates; a number beyond a double (1e999 parses as
    infinity) becomes null. Iterative, so a deeply nested document cannot exhaust the stack.
    """
    changed = False

    def clean_scalar(item: Any) -> Any:
        nonlocal changed
        if isinstance(item, str) and _unstorable(item):
            changed = True
            return text_storable(item)
        if isinstance(item, float) and not math.isfinite(item):
            changed = True
            return None
        return item

    def clean_key(key: str) -> str:
        nonlocal changed
        cleaned = text_storable(key)
        changed = changed or cleaned != key
        return cleaned

    if not isinstance(value, (dict, list)):
        return clean_scalar(value), changed
    top: dict[str, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, dict[str, Any] | list[Any]]] = [(value, top)]

    def clean(item: Any) -> Any:
        if not isinstance(item, (dict, list)):
            return clean_scalar(item)
        child: dict[str, Any] | list[Any] = {} if isinstance(item, dict) else []
        stack.append((item, child))
        return child

    while stack:
        source, target = stack.pop()
        if isinstance(target, dict):
            for key, item in source.items():
                target[clean_key(key)] = clean(item)
        else:
            target.extend(clean(item) for item in source)
    return top, changed


def _failed_status(header: ObjectHeader) -> str:
    return (
        ObjectHeader.Status.JSON_INVALID
        if header.kind == ObjectHeader.Kind.JSON
        else ObjectHeader.Status.UNREADABLE
    )


def header_storable(header: ObjectHeader) -> ObjectHeader:
    """The header with every value made storable; what had to change is its reason (first) and status."""
    reasons: list[str] = []
    key_problem = _unstorable(header.key)
    if key_problem:
        header.key = text_storable(header.key)
        # The stored key is not the object's key, so it may not stand in the cache for another object's.
        header.reusable = False
        reasons.append(
            f"The key holds {key_problem}, which the dashboard cannot store or map, so the object "
            f"is not read; it is shown with {REPLACEMENT} in its place. Rename the object."
        )
    for field in header._meta.concrete_fields:
        if not isinstance(field, (CharField, TextField)) or field.attname == "key":
            continue
        value = getattr(header, field.attname)
        if not isinstance(value, str) or not (problem := _unstorable(value)):
            continue
        setattr(header, field.attname, text_storable(value))
        if keyword := _KEYWORDS.get(field.attname):
            reasons.append(
                f"{keyword} holds {problem}, which DICOM does not allow in a value and no database "
                "column can hold; the file is left out of the index."
            )
    document_changed = False
    for column in _JSON_COLUMNS:
        cleaned, changed = json_storable(getattr(header, column))
        if changed:
            setattr(header, column, cleaned)
            document_changed = document_changed or column == "json_document"
    if document_changed and header.status != ObjectHeader.Status.JSON_INVALID:
        # The validator names such values itself; this is for any it did not.
        reasons.append(
            "The file holds a NUL character, a lone surrogate or a number beyond a double, which no "
            "database column can hold."
        )
    if not reasons:
        return header
    if header.status in (ObjectHeader.Status.OK, ObjectHeader.Status.JSON_VALID):
        header.status = _failed_status(header)
        header.error = reasons[0]
    elif reasons[0] not in header.error:
        header.error = f"{reasons[0]} {header.error}".strip()
    if header.kind == ObjectHeader.Kind.JSON:
        header.json_errors = [
            {"path": "", "message": reason} for reason in reasons
        ] + list(header.json_errors or [])
    return header


def key_refused(bucket: str, obj: aws.S3Object) -> ObjectHeader:
    """The result of an object whose key no column can hold (a NUL), unread: its key is its reason."""
    header = ObjectHeader(
        bucket=bucket,
        key=obj.key,
        etag=obj.etag,
        size=obj.size,
        kind=sniff_kind(obj.key, b""),
    )
    header.status = _failed_status(header)
    return header_storable(header)


def stand_in(header: ObjectHeader, why: str) -> ObjectHeader:
    """A row that records only that the database refused this object's result (`why`: the error's name)."""
    return ObjectHeader(
        bucket=header.bucket,
        key=text_storable(header.key),
        etag=text_storable(header.etag),
        size=header.size,
        kind=header.kind,
        status=_failed_status(header),
        error=f"The result of reading this file could not be stored ({why}); "
        "it is left out of the index.",
        requests=header.requests,
        bytes_read=header.bytes_read,
        # Perhaps the database's failing rather than the file's: a later scan reads it again.
        reusable=False,
    )


def headers_create(
    headers: list[ObjectHeader], *, ignore_conflicts: bool = False
) -> list[ObjectHeader]:
    """Insert the headers in one statement, or row by row if it fails; the rows that stand for them.

    Each header stands for itself, or, when the database refused it, for a stand-in row (not
    reusable, so the caller counts it as its own). Runs inside the caller's transaction; each attempt
    has a savepoint, so a refused row never aborts the batch.
    """
    if not headers:
        return []
    try:
        with transaction.atomic():
            ObjectHeader.objects.bulk_create(headers, ignore_conflicts=ignore_conflicts)
        return headers
    except REFUSED as error:
        # Never the key or the message: either may quote file content or a patient's name.
        logger.warning(
            "A batch of %s results was refused (%s); writing it row by row",
            len(headers),
            type(error).__name__,
        )
    stored: list[ObjectHeader] = []
    for header in headers:
        header.pk = None
        try:
            with transaction.atomic():
                ObjectHeader.objects.bulk_create(
                    [header], ignore_conflicts=ignore_conflicts
                )
            stored.append(header)
        except REFUSED as error:
            logger.warning("One result was refused (%s)", type(error).__name__)
            row = stand_in(header, type(error).__name__)
            ObjectHeader.objects.bulk_create([row])
            stored.append(row)
    return stored
