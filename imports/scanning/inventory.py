"""An S3 Inventory as a scan's listing: the keys under the prefix, with sizes and ETags, from files S3 delivers.

Listing 10 million keys is 10,000 sequential ListObjectsV2 calls; an archive that has an inventory already holds
the same list as files. `inventory_open` reads the manifest (`manifest.json` in the documented layout: its
`sourceBucket`, `destinationBucket` ARN, `creationTimestamp` in milliseconds, `fileFormat`, `fileSchema` and
`files`), and `inventory_pages` streams its gzip CSV data files into pages of objects, keeping only the current
versions of the keys under the prefix. An object whose ETag the cache holds costs no GET, as after a listing.

An inventory can be a day old. The scan says how old; confirming an import still lists the prefix itself, so a
stale inventory can never become a wrong import.

Conservative choices (UNVERIFIED against a live bucket): keys are decoded with `unquote_plus` (S3 documents them
as URL-encoded in CSV; a literal "+" arrives as %2B either way); only CSV is read (ORC and Parquet are refused by
name); a row whose IsLatest is false or IsDeleteMarker true is left out.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from imports.aws import client as aws
from imports.aws.streams import s3_open
from imports.validators import split_s3_uri

MANIFEST_MAX_BYTES = 16 * 1024 * 1024
PAGE_SIZE = 1000
REQUIRED_COLUMNS = ("Bucket", "Key", "Size", "ETag")


class InventoryRefused(Exception):
    """The inventory cannot stand in for a listing: the message says which part and why."""


@dataclass(frozen=True)
class Inventory:
    uri: str  # the manifest's
    source_bucket: str
    destination_bucket: str
    created_at: datetime | None
    columns: dict[str, int]  # fileSchema name -> position in a row
    data_files: list[str]  # keys in the destination bucket


def _manifest_problem(uri: str, what: str) -> InventoryRefused:
    return InventoryRefused(f"The inventory manifest {uri} {what}")


def inventory_open(*, region: str, manifest_uri: str, bucket: str) -> Inventory:
    """The manifest at `manifest_uri`, checked: an inventory of `bucket`, in CSV, with the columns a scan needs."""
    if not manifest_uri.startswith("s3://") or not manifest_uri.endswith(".json"):
        raise InventoryRefused(
            f"--inventory {manifest_uri!r}: give the s3:// URI of the inventory's manifest.json."
        )
    manifest_bucket, key = split_s3_uri(manifest_uri)
    try:
        raw = aws.s3_read_object(
            region=region, bucket=manifest_bucket, key=key, max_bytes=MANIFEST_MAX_BYTES
        )
    except aws.NotFound as error:
        raise _manifest_problem(manifest_uri, "does not exist.") from error
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise _manifest_problem(manifest_uri, "is not JSON.") from error
    if not isinstance(manifest, dict):
        raise _manifest_problem(manifest_uri, "is not a JSON object.")
    source = manifest.get("sourceBucket")
    if source != bucket:
        raise _manifest_problem(
            manifest_uri,
            f"lists bucket {source!r}, not {bucket!r}: choose the inventory of the bucket you scan.",
        )
    file_format = str(manifest.get("fileFormat", ""))
    if file_format.upper() != "CSV":
        raise _manifest_problem(
            manifest_uri,
            f"is in {file_format or 'an unnamed format'}; only CSV inventories are read. "
            "Configure the inventory's output format as CSV.",
        )
    names = [n.strip() for n in str(manifest.get("fileSchema", "")).split(",")]
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        raise _manifest_problem(
            manifest_uri,
            f"has no {', '.join(missing)} column; its fileSchema must include "
            f"{', '.join(REQUIRED_COLUMNS)} (add Size and ETag to the inventory's fields).",
        )
    files = manifest.get("files")
    entries = (
        [f.get("key") for f in files if isinstance(f, dict)]
        if isinstance(files, list)
        else []
    )
    keys = [k for k in entries if isinstance(k, str) and k]
    if not keys or len(keys) != len(entries):
        raise _manifest_problem(
            manifest_uri, "names no data file (its files list is empty)."
        )
    destination = str(manifest.get("destinationBucket", ""))
    return Inventory(
        uri=manifest_uri,
        source_bucket=bucket,
        # An ARN (arn:aws:s3:::name) in the documented layout; a bare name is taken as it is.
        destination_bucket=destination.rsplit(":", 1)[-1] or manifest_bucket,
        created_at=_timestamp(manifest.get("creationTimestamp")),
        columns={name: n for n, name in enumerate(names)},
        data_files=keys,
    )


def _timestamp(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def inventory_pages(
    *, region: str, inventory: Inventory, prefix: str
) -> Iterator[list[aws.S3Object]]:
    """Pages of the current objects under `prefix`, from every data file in turn."""
    page: list[aws.S3Object] = []
    for key in inventory.data_files:
        for obj in _objects(region, inventory, key, prefix):
            page.append(obj)
            if len(page) == PAGE_SIZE:
                yield page
                page = []
    if page:
        yield page


def _objects(
    region: str, inventory: Inventory, key: str, prefix: str
) -> Iterator[aws.S3Object]:
    where = f"s3://{inventory.destination_bucket}/{key}"
    column = inventory.columns
    try:
        with s3_open(
            region=region, bucket=inventory.destination_bucket, key=key
        ) as body:
            text = io.TextIOWrapper(
                gzip.GzipFile(fileobj=body), encoding="utf-8", newline=""
            )
            for number, row in enumerate(csv.reader(text), start=1):
                if len(row) < len(column):
                    raise InventoryRefused(
                        f"The inventory data file {where} has {len(row)} fields on row {number}; "
                        f"its manifest's fileSchema names {len(column)}."
                    )
                if row[column["Bucket"]] != inventory.source_bucket or _not_current(
                    row, column
                ):
                    continue
                name = unquote_plus(row[column["Key"]])
                if not name.startswith(prefix) or (
                    name.endswith("/") and row[column["Size"]] in ("", "0")
                ):
                    continue  # outside the prefix, or a console folder placeholder
                yield aws.S3Object(
                    key=name,
                    size=int(row[column["Size"]] or 0),
                    etag=row[column["ETag"]].strip('"'),
                    last_modified=None,
                )
    except aws.NotFound as error:
        raise InventoryRefused(
            f"The inventory data file {where} that its manifest names does not exist "
            "(the inventory may have been replaced meanwhile: take its newest manifest)."
        ) from error
    except (OSError, EOFError, zlib.error) as error:
        raise InventoryRefused(
            f"The inventory data file {where} is not a gzip CSV file ({error})."
        ) from error
    except (UnicodeDecodeError, csv.Error, ValueError) as error:
        raise InventoryRefused(
            f"The inventory data file {where} cannot be read as CSV ({type(error).__name__})."
        ) from error


def _not_current(row: list[str], column: dict[str, int]) -> bool:
    latest = column.get("IsLatest")
    deleted = column.get("IsDeleteMarker")
    return (latest is not None and row[latest].lower() == "false") or (
        deleted is not None and row[deleted].lower() == "true"
    )
