"""CopyObject for a campaign's staging: pinned to the scanned version (localaws honours the precondition as S3
does), verified by ETag."""

from __future__ import annotations

import botocore.session
import pytest

from imports.aws import client as aws
from imports.aws.copies import s3_copy_object
from localaws.testing import LocalAWSHandle

BUCKET = "copy-bucket"


@pytest.fixture
def source(localaws: LocalAWSHandle) -> str:
    localaws.create_bucket(BUCKET)
    localaws.put(f"s3://{BUCKET}/in/a b+c.dcm", b"DICM" * 100)
    etag = localaws.s3_client().head_object(Bucket=BUCKET, Key="in/a b+c.dcm")["ETag"]
    return str(etag).strip('"')


def test_botocore_sends_the_precondition_in_the_header_localaws_reads() -> None:
    model = botocore.session.get_session().get_service_model("s3")
    members = model.operation_model("CopyObject").input_shape
    assert members is not None
    shape = members.members["CopySourceIfMatch"]
    assert shape.serialization == {
        "location": "header",
        "name": "x-amz-copy-source-if-match",
    }


def test_a_copy_of_the_scanned_version_keeps_its_etag(
    localaws: LocalAWSHandle, source: str
) -> None:
    copied = s3_copy_object(
        region="us-east-1",
        bucket=BUCKET,
        key="in/a b+c.dcm",
        etag=source,
        dest_bucket=BUCKET,
        dest_key="staging/1/1/in/a b+c.dcm",
    )
    assert copied == source
    body = localaws.s3_client().get_object(
        Bucket=BUCKET, Key="staging/1/1/in/a b+c.dcm"
    )
    assert body["Body"].read() == b"DICM" * 100


def test_a_source_rewritten_since_the_scan_is_not_copied(
    localaws: LocalAWSHandle, source: str
) -> None:
    localaws.put(f"s3://{BUCKET}/in/a b+c.dcm", b"changed")
    with pytest.raises(aws.PreconditionFailed):
        s3_copy_object(
            region="us-east-1",
            bucket=BUCKET,
            key="in/a b+c.dcm",
            etag=source,
            dest_bucket=BUCKET,
            dest_key="staging/1/1/in/a b+c.dcm",
        )
    listed = localaws.s3_client().list_objects_v2(Bucket=BUCKET, Prefix="staging/")
    assert listed.get("KeyCount", 0) == 0
