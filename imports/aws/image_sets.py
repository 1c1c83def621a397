"""HealthImaging's image-set reads, through the one door: find a study's image sets, read one's metadata.

The image-set operations carry AWS's `runtime-` host prefix; the clients of imports.aws.client are built with
`inject_host_prefix=False`, which keeps a custom endpoint (localaws) reachable and changes nothing on AWS, where
boto3 resolves the runtime host from the endpoint rules. Errors are those of imports.aws.client: throttling,
5xx and no answer are transient; a ConflictException of GetImageSetMetadata ("Requested ImageSet metadata is not
consistent yet", right after an import) is made transient too, since asking again in a few seconds succeeds.

IAM permissions these need, besides those in imports.aws.client's docstring:
- medical-imaging:SearchImageSets on the datastore
- medical-imaging:GetImageSetMetadata on its image sets
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imports.aws.client import _AWS_ERRORS, AwsError, _client, _translate

if TYPE_CHECKING:
    from mypy_boto3_medical_imaging import HealthImagingClient

# Tries of each call, the first included: throttling and 5xx are retried by botocore's standard mode, with its
# backoff, this many times at most. A prediction never waits long; it says "not predicted" instead.
ATTEMPTS = 3
PAGE_SIZE = 50
# One study holds a few hundred series at most; a search that pages past this is refused rather than followed.
MAX_PAGES = 40
# AWS allows 50 MB of metadata per import; a document larger than this (unpacked) is not read.
MAX_METADATA_BYTES = 64 * 1024 * 1024


class NotConsistentYet(AwsError):
    """GetImageSetMetadata's ConflictException right after an import: ask again in a few seconds."""

    code = "ConflictException"
    transient = True


def _reader(region: str) -> HealthImagingClient:
    # Cached by imports.aws.client (and forgotten by its reset_clients).
    client: HealthImagingClient = _client("medical-imaging", region, ATTEMPTS)
    return client


def image_sets_client(region: str) -> HealthImagingClient:
    """The client these reads use (tests pin its requests with botocore's Stubber)."""
    return _reader(region)


@dataclass(frozen=True)
class ImageSetSummary:
    image_set_id: str
    version: int | None
    is_primary: bool | None
    # From the summary's DICOMTags; "" when AWS left it out.
    series_instance_uid: str
    updated_at: datetime | None


def search_image_sets(
    *,
    region: str,
    datastore_id: str,
    study_uid: str,
    primary_only: bool = True,
    max_pages: int = MAX_PAGES,
) -> list[ImageSetSummary]:
    """SearchImageSets for one study (and only its primary image sets, by default), every page."""
    filters: list[dict[str, Any]] = [
        {"values": [{"DICOMStudyInstanceUID": study_uid}], "operator": "EQUAL"}
    ]
    if primary_only:
        filters.append({"values": [{"isPrimary": True}], "operator": "EQUAL"})
    found: list[ImageSetSummary] = []
    token: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {
            "datastoreId": datastore_id,
            "searchCriteria": {"filters": filters},
            "maxResults": PAGE_SIZE,
        }
        if token:
            params["nextToken"] = token
        try:
            response = _reader(region).search_image_sets(**params)
        except _AWS_ERRORS as error:
            # The study UID is PHI-adjacent: the message names the datastore, never the study.
            raise _translate(error, f"SearchImageSets in {datastore_id}") from error
        for item in response.get("imageSetsMetadataSummaries", []):
            tags = item.get("DICOMTags") or {}
            found.append(
                ImageSetSummary(
                    image_set_id=item["imageSetId"],
                    version=item.get("version"),
                    is_primary=item.get("isPrimary"),
                    series_instance_uid=str(tags.get("DICOMSeriesInstanceUID") or ""),
                    updated_at=item.get("updatedAt"),
                )
            )
        token = response.get("nextToken")
        if not token:
            return found
    raise AwsError(
        f"SearchImageSets in {datastore_id}: more than {max_pages} pages for one study; not followed further",
        code="TooManyPages",
    )


def get_image_set_metadata(
    *,
    region: str,
    datastore_id: str,
    image_set_id: str,
    version: int | None = None,
) -> dict[str, Any]:
    """GetImageSetMetadata, gunzipped and parsed: the document keyed by attribute name (Patient, Study, ...)."""
    params: dict[str, Any] = {"datastoreId": datastore_id, "imageSetId": image_set_id}
    if version is not None:
        params["versionId"] = str(version)
    doing = f"GetImageSetMetadata {image_set_id}"
    try:
        response = _reader(region).get_image_set_metadata(**params)
        body = response["imageSetMetadataBlob"].read()
    except _AWS_ERRORS as error:
        translated = _translate(error, doing)
        if translated.code == "ConflictException":
            raise NotConsistentYet(str(translated), detail=translated.detail) from error
        raise translated from error
    encoding = str(response.get("contentEncoding") or "").lower()
    try:
        if encoding == "gzip" or body[:2] == b"\x1f\x8b":
            body = _gunzip(body)
        document = json.loads(body)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise AwsError(
            f"{doing}: the metadata is not gzipped JSON ({error})", code="BadMetadata"
        ) from None
    if not isinstance(document, dict):
        raise AwsError(
            f"{doing}: the metadata is not a JSON object", code="BadMetadata"
        )
    return document


def _gunzip(data: bytes) -> bytes:
    # Bounded: a hostile or broken answer cannot make the dashboard unpack gigabytes.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_METADATA_BYTES + 1)
    if len(out) > MAX_METADATA_BYTES:
        raise ValueError(f"more than {MAX_METADATA_BYTES:,} bytes unpacked")
    if not inflater.eof:
        raise EOFError("the gzip stream is truncated")
    return out
