"""Import the demo prefix into the demo datastore with plain boto3, the way any AWS script would.

    AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \\
        python localaws/examples/import_demo.py

Run `python manage.py seed_demo` (or `make demo`) first. The script lists the input prefix, builds its metadata
mappings from the two valid metadata files (they carry the UIDs they are meant for), starts a DICOM import job,
polls it until it ends, and prints the job's manifest and ndjson result lines. Nothing here is specific to localaws:
boto3 reads AWS_ENDPOINT_URL itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from typing import Any

import boto3
from botocore.config import Config

INPUT_S3_URI = "s3://demo-dicom-input/incoming/"
OUTPUT_S3_URI = "s3://demo-import-results/jobs/"
DATASTORE_NAME = "demo-datastore"
ROLE_ARN = "arn:aws:iam::123456789012:role/DemoHealthImagingImportRole"
STUDY_METADATA_FILE = "metadata/study-ct-chest.json"
SERIES_METADATA_FILE = "metadata/series-mr-brain-t2.json"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
RESULT_FILES = (
    "SUCCESS/success.ndjson",
    "FAILURE/failure.ndjson",
    "WARNING/warning.ndjson",
)


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def clients() -> tuple[Any, Any]:
    region = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A HealthImaging client would put "runtime-" in front of the endpoint host for image-set calls;
    # a single local endpoint cannot follow that.
    config = Config(inject_host_prefix=False, retries={"mode": "standard"})
    make: Any = boto3.client  # boto3-stubs types only literal service names
    return make("s3", region_name=region, config=config), make(
        "medical-imaging", region_name=region, config=config
    )


def list_prefix(s3: Any, uri: str) -> list[dict[str, Any]]:
    bucket, prefix = split_s3_uri(uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj for page in pages for obj in page.get("Contents", [])]


def read_json(s3: Any, uri: str) -> Any:
    bucket, key = split_s3_uri(uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def first_value(document: dict[str, Any], tag: str) -> str:
    value: str = document[tag]["Value"][0]
    return value


def find_datastore(hi: Any) -> str:
    for page in hi.get_paginator("list_datastores").paginate(datastoreStatus="ACTIVE"):
        for summary in page.get("datastoreSummaries", []):
            if summary["datastoreName"] == DATASTORE_NAME:
                datastore_id: str = summary["datastoreId"]
                return datastore_id
    raise SystemExit(
        f"No ACTIVE datastore named {DATASTORE_NAME}; run `python manage.py seed_demo` first."
    )


def build_mappings(s3: Any) -> list[dict[str, str]]:
    study = read_json(s3, INPUT_S3_URI + STUDY_METADATA_FILE)
    series = read_json(s3, INPUT_S3_URI + SERIES_METADATA_FILE)
    return [
        {
            "studyInstanceUID": first_value(study, STUDY_INSTANCE_UID),
            "metadataFilePath": STUDY_METADATA_FILE,
        },
        {
            "studyInstanceUID": first_value(series, STUDY_INSTANCE_UID),
            "seriesInstanceUID": first_value(series, SERIES_INSTANCE_UID),
            "metadataFilePath": SERIES_METADATA_FILE,
        },
    ]


def wait_for_job(
    hi: Any, datastore_id: str, job_id: str, *, poll_interval: float, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        props: dict[str, Any] = hi.get_dicom_import_job(
            datastoreId=datastore_id, jobId=job_id
        )["jobProperties"]
        if props["jobStatus"] != last:
            last = props["jobStatus"]
            print(f"Job {job_id}: {last}")
        if last in ("COMPLETED", "FAILED"):
            return props
        if time.monotonic() > deadline:
            raise SystemExit(f"Job {job_id} is still {last} after {timeout:.0f} s.")
        time.sleep(poll_interval)


def read_results(
    s3: Any, output_uri: str, *, poll_interval: float, timeout: float
) -> dict[str, bytes]:
    """The job folder's files; the manifest can land after the status changes, so wait for it."""
    bucket, prefix = split_s3_uri(output_uri)
    deadline = time.monotonic() + timeout
    while True:
        keys = [obj["Key"] for obj in list_prefix(s3, output_uri)]
        if prefix + "job-output-manifest.json" in keys or time.monotonic() > deadline:
            break
        time.sleep(poll_interval)
    return {
        key[len(prefix) :]: s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in keys
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        help="seconds between GetDICOMImportJob calls",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    s3, hi = clients()

    objects = list_prefix(s3, INPUT_S3_URI)
    kinds = Counter(
        obj["Key"].rsplit(".", 1)[-1] if "." in obj["Key"] else "(none)"
        for obj in objects
    )
    print(
        f"{INPUT_S3_URI}: {len(objects)} objects ({', '.join(f'{n} .{k}' for k, n in kinds.most_common())})"
    )

    datastore_id = find_datastore(hi)
    mappings = build_mappings(s3)
    print(f"Datastore {DATASTORE_NAME}: {datastore_id}")
    print(
        f"Mappings: {STUDY_METADATA_FILE} (study level), {SERIES_METADATA_FILE} (series level)"
    )
    job = hi.start_dicom_import_job(
        jobName="import-demo-example",
        datastoreId=datastore_id,
        dataAccessRoleArn=ROLE_ARN,
        # One token per run: the same token would return the earlier job instead of starting one.
        clientToken=uuid.uuid4().hex,
        inputS3Uri=INPUT_S3_URI,
        outputS3Uri=OUTPUT_S3_URI,
        importConfiguration={
            "dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": mappings}
        },
    )
    props = wait_for_job(
        hi,
        datastore_id,
        job["jobId"],
        poll_interval=args.poll_interval,
        timeout=args.timeout,
    )
    if props.get("message"):
        print(f"Message: {props['message']}")
    print(f"Output: {props['outputS3Uri']}")

    files = read_results(
        s3, props["outputS3Uri"], poll_interval=args.poll_interval, timeout=args.timeout
    )
    manifest = files.get("job-output-manifest.json")
    print("\njob-output-manifest.json:")
    print(json.dumps(json.loads(manifest), indent=2) if manifest else "(not written)")
    for name in RESULT_FILES:
        if name not in files:
            continue
        lines = files[name].decode().splitlines()
        print(f"\n{name}: {len(lines)} lines")
        for line in lines:
            print(line)
    return 0 if props["jobStatus"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
