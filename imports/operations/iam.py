"""IAM policies for a deployment, built from the configured datastores and imports.aws.permissions.

Three documents, for `python manage.py iam_policy`:
- `app`: the dashboard's own credentials (instance role or profile): the HealthImaging operations it calls on each
  datastore, iam:PassRole of each data access role to HealthImaging only, and S3 scoped to each datastore's input
  and output prefixes (and the audit checkpoints' prefix when AUDIT_CHECKPOINT_S3_URI is set);
- `data-access`: what a datastore's data access role needs, HealthImaging reading the input and writing the output;
- `trust`: who may assume that role: HealthImaging, for this account and this datastore only (confused deputy).
Browsing outside the datastores' prefixes needs more s3:ListBucket and s3:GetObject than `app` grants: on purpose;
name other input prefixes drafts use with `--input`. Not generated (UNVERIFIED, or the account's own choice): KMS
permissions for SSE-KMS buckets (the data access role then needs to decrypt the input and encrypt the output), and
the source bucket's policy for a cross-account input (`input_owner_account_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imports.aws.permissions import HEALTHIMAGING_CALLS, S3_CALLS, iam_action
from imports.models import Datastore
from imports.validators import split_s3_uri

VERSION = "2012-10-17"
SERVICE_PRINCIPAL = "medical-imaging.amazonaws.com"


class PolicyRefused(Exception):
    """A datastore lacks what its policy names (its role ARN or datastore ID)."""


@dataclass(frozen=True)
class _Place:
    partition: str
    account: str
    region: str
    datastore_arn: str


def _place(datastore: Datastore) -> _Place:
    # arn:PARTITION:iam::ACCOUNT:role/NAME: the role's account owns the datastore it is passed to.
    parts = datastore.role_arn.split(":")
    if len(parts) < 6 or parts[2] != "iam" or not parts[4]:
        raise PolicyRefused(
            f"Datastore “{datastore.name}”: set its data access role ARN "
            "(arn:aws:iam::ACCOUNT:role/NAME) first; the policy names its account."
        )
    if not datastore.datastore_id:
        raise PolicyRefused(
            f"Datastore “{datastore.name}”: set its HealthImaging datastore ID first."
        )
    partition, account = parts[1], parts[4]
    return _Place(
        partition,
        account,
        datastore.region,
        f"arn:{partition}:medical-imaging:{datastore.region}:{account}:datastore/{datastore.datastore_id}",
    )


def _bucket_arn(partition: str, uri: str) -> str:
    return f"arn:{partition}:s3:::{split_s3_uri(uri)[0]}"


def _objects_arn(partition: str, uri: str) -> str:
    bucket, prefix = split_s3_uri(uri)
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


def _list_statements(
    sid: str, partition: str, uris: Iterable[str]
) -> list[dict[str, Any]]:
    """s3:ListBucket per bucket, limited to the prefixes (none when a prefix is the whole bucket)."""
    prefixes: dict[str, set[str]] = {}
    for uri in uris:
        bucket, prefix = split_s3_uri(uri)
        prefixes.setdefault(bucket, set()).add(prefix)
    statements = []
    for n, (bucket, under) in enumerate(sorted(prefixes.items()), start=1):
        statement: dict[str, Any] = {
            "Sid": f"{sid}{n}",
            "Effect": "Allow",
            "Action": iam_action("s3", "ListObjectsV2"),
            "Resource": f"arn:{partition}:s3:::{bucket}",
        }
        if "" not in under:
            statement["Condition"] = {
                "StringLike": {
                    "s3:prefix": sorted(set(under) | {f"{p}*" for p in under})
                }
            }
        statements.append(statement)
    return statements


def _healthimaging_actions(scope: str) -> list[str]:
    return sorted(
        iam_action("medical-imaging", op)
        for op, on in HEALTHIMAGING_CALLS.items()
        if on == scope
    )


def _datastores_or_refuse(datastores: Iterable[Datastore]) -> list[Datastore]:
    chosen = list(datastores)
    if not chosen:
        raise PolicyRefused(
            "No datastore is configured: add one in the admin site first."
        )
    return chosen


def app_policy(
    datastores: Iterable[Datastore],
    *,
    inputs: Iterable[str] = (),
    checkpoint_uri: str = "",
) -> dict[str, Any]:
    chosen = _datastores_or_refuse(datastores)
    places = [_place(d) for d in chosen]
    partition = places[0].partition
    object_actions = sorted(
        {iam_action("s3", op) for op, scope in S3_CALLS.items() if scope == "object"}
    )
    uris = sorted(
        {uri for d in chosen for uri in (d.input_s3_uri, d.output_s3_uri) if uri}
        | set(inputs)
    )
    statements: list[dict[str, Any]] = [
        {
            "Sid": "HealthImagingOnTheDatastores",
            "Effect": "Allow",
            "Action": _healthimaging_actions("datastore"),
            "Resource": sorted({p.datastore_arn for p in places}),
        },
        {
            "Sid": "ReadTheDatastoresImageSets",
            "Effect": "Allow",
            "Action": _healthimaging_actions("imageset"),
            "Resource": sorted({f"{p.datastore_arn}/imageset/*" for p in places}),
        },
        {
            "Sid": "PassTheDataAccessRolesToHealthImagingOnly",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": sorted({d.role_arn for d in chosen}),
            "Condition": {"StringEquals": {"iam:PassedToService": SERVICE_PRINCIPAL}},
        },
        *_list_statements("ListThePrefixes", partition, uris),
    ]
    if uris:
        statements.append(
            {
                # Headers and metadata files in; results out; editor files and Check-connection markers.
                "Sid": "ObjectsUnderThePrefixes",
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": sorted({_objects_arn(partition, uri) for uri in uris}),
            }
        )
    if checkpoint_uri:
        statements += _list_statements(
            "ListTheAuditCheckpoints", partition, [checkpoint_uri]
        )
        statements.append(
            {
                # Written by beat's worker, read by verify_audit; never deleted.
                "Sid": "WriteAndReadTheAuditCheckpoints",
                "Effect": "Allow",
                "Action": [
                    iam_action("s3", "GetObject"),
                    iam_action("s3", "PutObject"),
                ],
                "Resource": _objects_arn(partition, checkpoint_uri),
            }
        )
    return {"Version": VERSION, "Statement": statements}


def data_access_policy(
    datastore: Datastore, *, inputs: Iterable[str] = ()
) -> dict[str, Any]:
    place = _place(datastore)
    if not datastore.input_s3_uri or not datastore.output_s3_uri:
        raise PolicyRefused(
            f"Datastore “{datastore.name}”: set its input and output S3 URIs first; the role is scoped to them."
        )
    read = sorted({datastore.input_s3_uri, *inputs})
    return {
        "Version": VERSION,
        "Statement": [
            *_list_statements(
                "ListInputAndOutput", place.partition, [*read, datastore.output_s3_uri]
            ),
            {
                "Sid": "ReadTheInput",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": sorted(
                    {_objects_arn(place.partition, uri) for uri in read}
                ),
            },
            {
                "Sid": "WriteTheResults",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": _objects_arn(place.partition, datastore.output_s3_uri),
            },
        ],
    }


def trust_policy(datastore: Datastore) -> dict[str, Any]:
    place = _place(datastore)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "HealthImagingForThisDatastoreOnly",
                "Effect": "Allow",
                "Principal": {"Service": SERVICE_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": place.account},
                    "ArnEquals": {"aws:SourceArn": place.datastore_arn},
                },
            }
        ],
    }
