"""Validators for the identifiers HealthImaging accepts.

The patterns come from the medical-imaging service model (API version 2023-07-19). botocore checks
none of them client-side, so a bad value would only surface as a ValidationException from AWS.
Each message says what is wrong and what is allowed.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

DATASTORE_ID_RE = re.compile(r"[0-9a-z]{32}")
# IAM's own rules (IAM API reference, CreateRole): a role name is 1-64 of letters, digits and "+=,.@_-";
# a path is "/" or "/segments/". IAM allows any printable ASCII in a path; segments are held to the
# name's characters here, because "<", ">" or quotes in an ARN are a typing mistake or an attack, never
# a role an administrator made.
ROLE_NAME_CHARACTERS = "letters, digits and + = , . @ _ -"
ROLE_ARN_RE = re.compile(
    r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}"
)
S3_URI_RE = re.compile(r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?")
# The rest of S3's general purpose bucket naming rules, which the service model's pattern leaves out
# (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html). A name that breaks them
# cannot be a bucket, and "169.254.169.254" is the instance metadata address, not a bucket.
BUCKET_IP_FORM_RE = re.compile(r"[0-9]+(\.[0-9]+){3}")
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
JOB_NAME_RE = re.compile(r"[A-Za-z0-9._/#-]{1,64}")

# Regions where HealthImaging is offered (AWS general reference, gr/healthimaging).
HEALTHIMAGING_REGIONS = (
    "us-east-1",
    "us-west-2",
    "ap-southeast-2",
    "eu-west-1",
    "eu-west-2",
)

S3_URI_MAX_LENGTH = 1024
ROLE_ARN_MIN_LENGTH = 20
ROLE_ARN_MAX_LENGTH = 2048


def validate_datastore_id(value: str) -> None:
    if not DATASTORE_ID_RE.fullmatch(value):
        raise ValidationError(
            "“%(value)s” is not a HealthImaging datastore ID: expected exactly 32 lowercase letters "
            "and digits (0-9, a-z), as shown in the HealthImaging console.",
            code="invalid_datastore_id",
            params={"value": value},
        )


def validate_role_arn(value: str) -> None:
    if not ROLE_ARN_MIN_LENGTH <= len(value) <= ROLE_ARN_MAX_LENGTH:
        raise ValidationError(
            "The role ARN is %(length)d characters long; HealthImaging accepts %(min)d to %(max)d.",
            code="invalid_role_arn_length",
            params={
                "length": len(value),
                "min": ROLE_ARN_MIN_LENGTH,
                "max": ROLE_ARN_MAX_LENGTH,
            },
        )
    if not ROLE_ARN_RE.fullmatch(value):
        raise ValidationError(
            "“%(value)s” is not an IAM role ARN: expected "
            "arn:aws:iam::<12-digit account>:role/<optional path/><role name>, where the role name is "
            "1-64 of %(characters)s, for example "
            "arn:aws:iam::123456789012:role/HealthImagingImportRole.",
            code="invalid_role_arn",
            params={"value": value, "characters": ROLE_NAME_CHARACTERS},
        )


def validate_s3_uri(value: str) -> None:
    if len(value) > S3_URI_MAX_LENGTH:
        raise ValidationError(
            "The S3 URI is %(length)d characters long; HealthImaging accepts at most %(max)d.",
            code="invalid_s3_uri_length",
            params={"length": len(value), "max": S3_URI_MAX_LENGTH},
        )
    if not S3_URI_RE.fullmatch(value):
        raise ValidationError(
            "“%(value)s” is not an S3 URI HealthImaging accepts: expected s3://<bucket>/<prefix>, "
            "where the bucket name is 3-63 lowercase letters, digits, dots or hyphens and starts and "
            "ends with a letter or digit.",
            code="invalid_s3_uri",
            params={"value": value},
        )
    bucket = split_s3_uri(value)[0]
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise ValidationError(
            "“%(bucket)s” is not an S3 bucket name: %(problem)s.",
            code="invalid_s3_bucket",
            params={"bucket": bucket, "problem": problem},
        )


def bucket_name_problem(bucket: str) -> str | None:
    """What S3's naming rules forbid in a bucket name that already has the right characters and length."""
    if ".." in bucket:
        return "it has two dots in a row, and each dot-separated part needs at least one character"
    if BUCKET_IP_FORM_RE.fullmatch(bucket):
        return "it has the form of an IP address, which S3 does not allow for a bucket"
    for prefix in BUCKET_RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return f"names starting with “{prefix}” are reserved by AWS"
    for suffix in BUCKET_RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return f"names ending with “{suffix}” are reserved by AWS (access points and other resources)"
    return None


def validate_output_s3_uri(value: str) -> None:
    validate_s3_uri(value)
    # HealthImaging appends "<datastoreId>-DicomImport-<jobId>/" to the output URI verbatim, so
    # without a trailing slash the job folder would be glued onto the last path segment.
    if not value.endswith("/"):
        raise ValidationError(
            "The output S3 URI must end with “/”: HealthImaging writes each job's results into a "
            "folder directly under it (for example s3://bucket/results/).",
            code="output_s3_uri_without_slash",
        )


def validate_job_name(value: str) -> None:
    if not JOB_NAME_RE.fullmatch(value):
        raise ValidationError(
            "A job name is 1-64 characters, each a letter, a digit or one of . _ / # - (no spaces); "
            "this one is %(length)d characters long.",
            code="invalid_job_name",
            params={"length": len(value)},
        )


def validate_account_id(value: str) -> None:
    if not ACCOUNT_ID_RE.fullmatch(value):
        raise ValidationError(
            "“%(value)s” is not an AWS account ID: expected exactly 12 digits. Leave the field "
            "empty when the input bucket belongs to the datastore's own account.",
            code="invalid_account_id",
            params={"value": value},
        )


def validate_region(value: str) -> None:
    if value not in HEALTHIMAGING_REGIONS:
        raise ValidationError(
            "HealthImaging is not available in “%(value)s”. Choose one of: %(allowed)s.",
            code="invalid_region",
            params={"value": value, "allowed": ", ".join(HEALTHIMAGING_REGIONS)},
        )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split s3://bucket/some/prefix into ("bucket", "some/prefix").

    >>> split_s3_uri("s3://bucket/a/b/")
    ('bucket', 'a/b/')
    >>> split_s3_uri("s3://bucket")
    ('bucket', '')
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
