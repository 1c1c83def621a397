"""pytest plugin: a `localaws` fixture serving S3 and HealthImaging over real HTTP on a free port.

Register with `pytest_plugins = ["localaws.testing"]`. One server runs for the whole session (moto's state is
process-global); each test gets it reset, with fast job delays, and with the AWS_* variables pointing boto3 at it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from localaws.server import LocalAWS

# Fast enough for a suite, slow enough that a test can observe SUBMITTED and IN_PROGRESS.
TEST_SETTINGS: dict[str, Any] = {
    "job_submitted_delay_s": 0.05,
    "job_in_progress_delay_s": 0.05,
}
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "localaws",
    "AWS_SECRET_ACCESS_KEY": "localaws",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class LocalAWSHandle:
    """What a test needs from the running server; `server` gives the rest."""

    def __init__(self, server: LocalAWS) -> None:
        self.server = server

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def add_fault(self, **fault: Any) -> None:
        self.server.faults.add(fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def calls(
        self, service: str | None = None, operation: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            c
            for c in self.server.calls.list()
            if (service is None or c["service"] == service)
            and (operation is None or c["operation"] == operation)
        ]

    def clear_calls(self) -> None:
        self.server.calls.clear()

    def configure(self, **settings: Any) -> None:
        """Change delays or quotas for this test (reset afterwards), e.g. max_files_per_job=3."""
        with self.server.healthimaging.lock:
            self.server.settings.update(settings)

    def image_sets(self, datastore_id: str | None = None) -> list[dict[str, Any]]:
        return self.server.healthimaging.image_sets(datastore_id)

    def change_metadata(self, image_set_id: str, tag: str, vr: str, value: Any) -> None:
        """Change one attribute of an image set's stored metadata, as another client's UpdateImageSetMetadata
        would: a new version holds it (GetImageSetMetadata and the conflict rule of later imports see it)."""
        healthimaging = self.server.healthimaging
        with healthimaging.lock:
            image_set = healthimaging.state.image_sets[image_set_id]
            image_set.metadata = {
                **image_set.metadata,
                tag: {"vr": vr, "Value": [value]},
            }
            image_set.version += 1
            image_set.updated_at = time.time()
            if image_set.history:
                image_set.record_version(image_set.updated_at)

    def _client(self, service: str, **config: Any) -> Any:
        options: dict[str, Any] = {
            "inject_host_prefix": False,
            "retries": {"mode": "standard", "total_max_attempts": 1},
        }
        options.update(config)
        make: Any = boto3.client  # boto3-stubs types only literal service names
        return make(
            service,
            endpoint_url=self.endpoint_url,
            region_name=ENVIRONMENT["AWS_DEFAULT_REGION"],
            aws_access_key_id=ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            config=Config(**options),
        )

    def s3_client(self, **config: Any) -> Any:
        """A boto3 S3 client without retries (pass retries=... to change), so injected faults surface."""
        return self._client("s3", **config)

    def hi_client(self, **config: Any) -> Any:
        return self._client("medical-imaging", **config)

    def create_datastore(self, name: str = "test-datastore") -> str:
        datastore_id: str = self.hi_client().create_datastore(datastoreName=name)[
            "datastoreId"
        ]
        return datastore_id

    def create_bucket(self, name: str) -> None:
        self.s3_client().create_bucket(Bucket=name)

    def put(self, uri: str, body: bytes | str | dict[str, Any]) -> None:
        """Upload to an s3:// URI; a dict is written as JSON."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.s3_client().put_object(
            Bucket=bucket,
            Key=key,
            Body=data.encode() if isinstance(data, str) else data,
        )

    def start_import(
        self, datastore_id: str, input_s3_uri: str, output_s3_uri: str, **params: Any
    ) -> str:
        params.setdefault(
            "dataAccessRoleArn",
            "arn:aws:iam::123456789012:role/HealthImagingImportRole",
        )
        response = self.hi_client().start_dicom_import_job(
            datastoreId=datastore_id,
            inputS3Uri=input_s3_uri,
            outputS3Uri=output_s3_uri,
            **params,
        )
        job_id: str = response["jobId"]
        return job_id

    def read_output(self, job_properties: dict[str, Any]) -> dict[str, Any]:
        """The manifest and the ndjson lines of a finished job, read over S3 like a client would."""
        bucket, _, prefix = (
            job_properties["outputS3Uri"].removeprefix("s3://").partition("/")
        )
        s3 = self.s3_client()
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        files = {
            o["Key"][len(prefix) :]: s3.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"
            ].read()
            for o in listing
        }

        def lines(name: str) -> list[dict[str, Any]]:
            return [
                json.loads(line)
                for line in files.get(name, b"").decode().splitlines()
                if line
            ]

        manifest = files.get("job-output-manifest.json")
        return {
            "files": sorted(files),
            "manifest": json.loads(manifest) if manifest else None,
            "success": lines("SUCCESS/success.ndjson"),
            "failure": lines("FAILURE/failure.ndjson"),
            "warning": lines("WARNING/warning.ndjson"),
        }

    def wait_for_job(
        self, datastore_id: str, job_id: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll GetDICOMImportJob until the job ends; returns jobProperties."""
        client = self.hi_client()
        deadline = time.monotonic() + timeout
        while True:
            props: dict[str, Any] = client.get_dicom_import_job(
                datastoreId=datastore_id, jobId=job_id
            )["jobProperties"]
            if props["jobStatus"] in ("COMPLETED", "FAILED"):
                return props
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {props['jobStatus']} after {timeout}s"
                )
            time.sleep(0.02)


def dicom_bytes(
    *,
    study: str,
    series: str,
    sop: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attributes: Any,
) -> bytes:
    """A small, valid CT instance as P10 bytes; attributes (keywords) override the defaults."""
    sop_uid = sop or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    defaults: dict[str, Any] = {
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "SOPInstanceUID": sop_uid,
        "StudyInstanceUID": study,
        "SeriesInstanceUID": series,
        "PatientName": "Doe^Jane",
        "PatientID": "PAT-1",
        "PatientBirthDate": "19700101",
        "PatientSex": "F",
        "StudyDate": "20240102",
        "StudyTime": "101500",
        "StudyID": "S1",
        "AccessionNumber": "ACC-1",
        "StudyDescription": "CT HEAD",
        "Modality": "CT",
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "Rows": 2,
        "Columns": 2,
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "PixelData": bytes(8),
    }
    defaults.update(attributes)
    for keyword, value in defaults.items():
        if value is not None:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def localaws_server() -> Iterator[LocalAWS]:
    server = LocalAWS(**TEST_SETTINGS).start()
    yield server
    server.stop()


@pytest.fixture
def localaws(
    localaws_server: LocalAWS, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAWSHandle]:
    localaws_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", localaws_server.endpoint_url)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    yield LocalAWSHandle(localaws_server)
    localaws_server.reset()
