"""Conditional PutObject (IfNoneMatch '*', IfMatch ETag) through imports.aws against localaws over HTTP: moto honours
both headers as S3 does, which the editor's saves and the corrections' writes rely on."""

from __future__ import annotations

import pytest

from imports.aws import client as aws
from localaws.testing import LocalAWSHandle

BUCKET = "put-bucket"


def put(key: str, body: bytes, **condition: str | bool | None) -> str:
    return aws.s3_put_object(
        region="us-east-1", bucket=BUCKET, key=key, body=body,
        content_type="application/json", **condition,  # type: ignore[arg-type]
    )  # fmt: skip


def test_if_none_match_writes_a_new_key_and_refuses_an_existing_one(
    localaws: LocalAWSHandle,
) -> None:
    localaws.create_bucket(BUCKET)
    etag = put("a.json", b"{}", if_none_match=True)
    assert etag
    with pytest.raises(aws.PreconditionFailed):
        put("a.json", b'{"x": 1}', if_none_match=True)
    body = localaws.s3_client().get_object(Bucket=BUCKET, Key="a.json")["Body"]
    assert body.read() == b"{}"


def test_if_match_writes_over_that_version_only(localaws: LocalAWSHandle) -> None:
    localaws.create_bucket(BUCKET)
    first = put("b.json", b"{}")
    second = put("b.json", b'{"x": 1}', if_match=first)
    assert second != first
    with pytest.raises(aws.PreconditionFailed):
        put("b.json", b'{"x": 2}', if_match=first)  # a stale ETag
    body = localaws.s3_client().get_object(Bucket=BUCKET, Key="b.json")["Body"]
    assert body.read() == b'{"x": 1}'
