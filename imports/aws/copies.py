"""Server-side copies for a campaign's staging (imports.campaigns.staging): CopyObject, pinned to the version
the scan read and verified by ETag.

IAM: CopyObject is not an IAM action of its own; S3 authorises it as s3:GetObject on the source and
s3:PutObject on the destination (permissions.IAM_ACTION).
"""

from __future__ import annotations

from imports.aws.client import _AWS_ERRORS, AwsError, _translate, s3_client


class CopyMismatch(AwsError):
    """The copy's ETag is not the source's: what landed is not what the scan read."""

    code = "CopyMismatch"


def s3_copy_object(
    *,
    region: str,
    bucket: str,
    key: str,
    etag: str,
    dest_bucket: str,
    dest_key: str,
) -> str:
    """Copy one object version to `dest_key` and return the copy's ETag.

    `CopySourceIfMatch` makes S3 refuse (PreconditionFailed) a source rewritten since the scan, so the
    copy is exactly what was planned. A single-part object's copy keeps its ETag (the MD5 of its bytes);
    a multipart source's ETag ("…-N") names its parts, which a one-request copy does not keep, so that
    check is left to the pinned source version (UNVERIFIED for SSE-KMS objects, whose ETags are not MD5s).
    """
    doing = f"Copying s3://{bucket}/{key} to s3://{dest_bucket}/{dest_key}"
    bare = etag.strip('"')
    try:
        response = s3_client(region).copy_object(
            Bucket=dest_bucket,
            Key=dest_key,
            # As a dict, botocore URL-encodes the key itself (a string would be encoded twice).
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceIfMatch=f'"{bare}"',
        )
    except _AWS_ERRORS as error:
        raise _translate(error, doing) from error
    copied = str(response.get("CopyObjectResult", {}).get("ETag", "")).strip('"')
    if "-" not in bare and copied != bare:
        raise CopyMismatch(
            f"{doing}: the copy's ETag {copied or '(none)'} is not the source's {bare}"
        )
    return copied
