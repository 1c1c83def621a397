"""The AWS operations this door calls, by service: the source of the IAM policy `manage.py iam_policy` writes.

A test reads every boto3 call in imports/aws and fails when one is missing here or listed here but never made,
so the generated policy can neither lack a permission the code needs nor grant one it does not use.
Plain data: no boto3, so the policy can be built where AWS is not configured.
"""

from __future__ import annotations

# API operation name -> what it acts on: "datastore" (its ARN), "imageset" (its image sets' ARNs),
# "bucket" or "object" (S3).
HEALTHIMAGING_CALLS = {
    "GetDatastore": "datastore",  # Check connection
    "StartDICOMImportJob": "datastore",  # submission; passes the data access role (iam:PassRole)
    "GetDICOMImportJob": "datastore",  # the poller
    "ListDICOMImportJobs": "datastore",  # jobs started outside the dashboard; reconciling a lost answer
    "SearchImageSets": "datastore",  # the prediction: a study's primary image sets (imports.aws.image_sets)
    "GetImageSetMetadata": "imageset",  # the prediction: what an image set holds
}
S3_CALLS = {
    "ListObjectsV2": "bucket",  # browse, scan, confirmation's re-listing, audit checkpoints
    "GetObject": "object",  # headers (ranged, presigned too), JSON files, job results, checkpoints
    "PutObject": "object",  # files written in the editor, the Check-connection marker, checkpoints
    "DeleteObject": "object",  # the Check-connection marker
    "CopyObject": "object",  # a campaign's staging copies (imports.aws.copies)
}

# The IAM action of an operation, where it is not the operation's own name.
# CopyObject is authorised as s3:GetObject on the source and s3:PutObject on the copy, both listed already.
IAM_ACTION = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "CopyObject"): "s3:PutObject",
}


def iam_action(service: str, operation: str) -> str:
    """`s3:ListBucket` for ("s3", "ListObjectsV2"); `medical-imaging:GetDatastore` for its own name."""
    return IAM_ACTION.get((service, operation), f"{service}:{operation}")
