"""The StartDICOMImportJob request: built from a datastore and mappings, checked for shape, hashed for the audit trail.

The composer (imports.drafts.services.draft_request), the CLI and imports.jobs.submit all build requests here, so there is one
spelling of what is sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from imports.mappings.rules import MAX_MAPPINGS, Mapping
from imports.models import (
    Datastore,
)

REQUEST_KEYS = {
    "datastoreId",
    "dataAccessRoleArn",
    "inputS3Uri",
    "outputS3Uri",
    "inputOwnerAccountId",
    "jobName",
    "importConfiguration",
}
REQUIRED_KEYS = ("datastoreId", "dataAccessRoleArn", "inputS3Uri", "outputS3Uri")


class InvalidJobRequest(ValueError):
    """A request that StartDICOMImportJob would refuse; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- The request ----------------------------------------------------------------------------


def job_request_build(
    *,
    datastore: Datastore,
    input_s3_uri: str | None = None,
    output_s3_uri: str | None = None,
    job_name: str = "",
    mappings: Iterable[Mapping] = (),
) -> dict[str, Any]:
    """StartDICOMImportJob's parameters (clientToken aside) for a datastore, as boto3 takes them.

    Optional members are left out rather than sent empty: AWS refuses an empty inputOwnerAccountId, and
    importConfiguration needs at least one mapping.
    """
    request: dict[str, Any] = {
        "datastoreId": datastore.datastore_id,
        "dataAccessRoleArn": datastore.role_arn,
        "inputS3Uri": input_s3_uri or datastore.input_s3_uri,
        "outputS3Uri": output_s3_uri or datastore.output_s3_uri,
    }
    if datastore.input_owner_account_id:
        request["inputOwnerAccountId"] = datastore.input_owner_account_id
    if job_name:
        request["jobName"] = job_name
    items = []
    for mapping in mappings:
        item = {"studyInstanceUID": mapping.study_instance_uid}
        if mapping.series_instance_uid:
            item["seriesInstanceUID"] = mapping.series_instance_uid
        item["metadataFilePath"] = mapping.metadata_file_path
        items.append(item)
    if items:
        request["importConfiguration"] = {
            "dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": items}
        }
    return request


def request_mappings(request: dict[str, Any]) -> list[dict[str, str]]:
    configuration = request.get("importConfiguration") or {}
    mappings: list[dict[str, str]] = configuration.get(
        "dicomJsonMetadataImportConfiguration", {}
    ).get("dicomMetadataMappings", [])
    return mappings


def request_problems(request: dict[str, Any], *, datastore: Datastore) -> list[str]:
    """The shape checks a request must pass before it is stored (the composer checks the content)."""
    problems = [
        f"Unknown parameter “{key}”." for key in sorted(set(request) - REQUEST_KEYS)
    ]
    problems += [
        f"“{key}” is missing." for key in REQUIRED_KEYS if not request.get(key)
    ]
    if request.get("datastoreId") and request["datastoreId"] != datastore.datastore_id:
        problems.append(
            f"datastoreId {request['datastoreId']} is not the datastore's ({datastore.datastore_id})."
        )
    if "importConfiguration" in request:
        mappings = request_mappings(request)
        if not isinstance(mappings, list) or not 1 <= len(mappings) <= MAX_MAPPINGS:
            problems.append(
                f"importConfiguration needs 1 to {MAX_MAPPINGS} mappings in "
                "dicomJsonMetadataImportConfiguration.dicomMetadataMappings."
            )
        else:
            for index, item in enumerate(mappings, start=1):
                if not isinstance(item, dict) or not item.get("studyInstanceUID"):
                    problems.append(f"Mapping {index} has no studyInstanceUID.")
                elif not item.get("metadataFilePath"):
                    problems.append(f"Mapping {index} has no metadataFilePath.")
                elif set(item) - {
                    "studyInstanceUID",
                    "seriesInstanceUID",
                    "metadataFilePath",
                }:
                    problems.append(f"Mapping {index} has unknown members.")
    try:
        json.dumps(request)
    except (TypeError, ValueError):
        problems.append("The request holds values that are not JSON.")
    return problems


def request_sha256(request: dict[str, Any], client_token: str) -> str:
    """sha256 of exactly what is sent (keys sorted): an auditor can hash the stored request and compare."""
    payload = {**request, "clientToken": client_token}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
