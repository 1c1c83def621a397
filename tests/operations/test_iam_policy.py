"""`manage.py iam_policy`: the policies a deployment needs, generated from the calls imports/aws makes."""

from __future__ import annotations

import ast
import json
from io import StringIO
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imports.aws.permissions import HEALTHIMAGING_CALLS, S3_CALLS
from imports.models import Datastore

pytestmark = pytest.mark.django_db

AWS_PACKAGE = Path(__file__).resolve().parents[2] / "imports" / "aws"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/HealthImagingImportRole"
DATASTORE_ID = "0123456789abcdef0123456789abcdef"
DATASTORE_ARN = f"arn:aws:medical-imaging:eu-west-1:{ACCOUNT}:datastore/{DATASTORE_ID}"


def _method_names(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, from the installed botocore model."""
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


def calls_in_the_door() -> dict[str, set[str]]:
    """Every S3 and HealthImaging operation imports/aws calls, read from its source."""
    methods = {service: _method_names(service) for service in ("s3", "medical-imaging")}
    found: dict[str, set[str]] = {"s3": set(), "medical-imaging": set()}
    for path in AWS_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(
                node.func, ast.Attribute
            ):
                continue
            name = node.func.attr
            if name == "generate_presigned_url" and node.args:
                # A presigned URL performs its operation later: the scanner's ranged GETs.
                first = node.args[0]
                assert isinstance(first, ast.Constant)
                found["s3"].add(methods["s3"][str(first.value)])
                continue
            for service, known in methods.items():
                if name in known:
                    found[service].add(known[name])
    return found


def test_the_permissions_list_every_operation_the_door_calls_and_no_other() -> None:
    found = calls_in_the_door()
    assert found["medical-imaging"] == set(HEALTHIMAGING_CALLS)
    assert found["s3"] == set(S3_CALLS)


def test_the_source_reader_would_see_a_call_that_is_not_listed() -> None:
    # The failing case of the rule above: a new call in the door's source is found.
    methods = _method_names("medical-imaging")
    tree = ast.parse("client.delete_image_set(datastoreId='x', imageSetId='y')")
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert isinstance(call.func, ast.Attribute)
    assert methods[call.func.attr] == "DeleteImageSet"
    assert "DeleteImageSet" not in HEALTHIMAGING_CALLS


@pytest.fixture
def datastore_eu(db: None) -> Datastore:
    return Datastore.objects.create(
        name="Archive",
        region="eu-west-1",
        datastore_id=DATASTORE_ID,
        role_arn=ROLE,
        input_s3_uri="s3://pacs-export/incoming/",
        output_s3_uri="s3://pacs-results/jobs/",
    )


def policy(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("iam_policy", *args, stdout=out)
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in document["Statement"] if s["Sid"] == sid)
    return found


def test_the_app_policy_scopes_healthimaging_passrole_and_s3_to_the_datastores(
    datastore_eu: Datastore, settings: Any
) -> None:
    settings.AUDIT_CHECKPOINT_S3_URI = ""
    document = policy("app", "--input", "s3://pacs-export/second-site/")
    assert document["Version"] == "2012-10-17"
    assert statement(document, "HealthImagingOnTheDatastores") == {
        "Sid": "HealthImagingOnTheDatastores",
        "Effect": "Allow",
        "Action": [
            "medical-imaging:GetDICOMImportJob",
            "medical-imaging:GetDatastore",
            "medical-imaging:ListDICOMImportJobs",
            "medical-imaging:SearchImageSets",
            "medical-imaging:StartDICOMImportJob",
        ],
        "Resource": [DATASTORE_ARN],
    }
    assert statement(document, "ReadTheDatastoresImageSets") == {
        "Sid": "ReadTheDatastoresImageSets",
        "Effect": "Allow",
        "Action": ["medical-imaging:GetImageSetMetadata"],
        "Resource": [f"{DATASTORE_ARN}/imageset/*"],
    }
    assert statement(document, "PassTheDataAccessRolesToHealthImagingOnly")[
        "Condition"
    ] == {"StringEquals": {"iam:PassedToService": "medical-imaging.amazonaws.com"}}
    listing = [
        s for s in document["Statement"] if s["Sid"].startswith("ListThePrefixes")
    ]
    assert [
        (s["Resource"], s["Condition"]["StringLike"]["s3:prefix"]) for s in listing
    ] == [
        (
            "arn:aws:s3:::pacs-export",
            ["incoming/", "incoming/*", "second-site/", "second-site/*"],
        ),
        ("arn:aws:s3:::pacs-results", ["jobs/", "jobs/*"]),
    ]
    objects = statement(document, "ObjectsUnderThePrefixes")
    assert objects["Action"] == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == [
        "arn:aws:s3:::pacs-export/incoming/*",
        "arn:aws:s3:::pacs-export/second-site/*",
        "arn:aws:s3:::pacs-results/jobs/*",
    ]
    assert not any("Checkpoints" in s["Sid"] for s in document["Statement"])
    assert "*" not in json.dumps(statement(document, "HealthImagingOnTheDatastores"))


def test_the_app_policy_adds_the_audit_checkpoints_without_delete(
    datastore_eu: Datastore, settings: Any
) -> None:
    settings.AUDIT_CHECKPOINT_S3_URI = "s3://audit-anchor/checkpoints/"
    document = policy("app")
    assert statement(document, "WriteAndReadTheAuditCheckpoints") == {
        "Sid": "WriteAndReadTheAuditCheckpoints",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": "arn:aws:s3:::audit-anchor/checkpoints/*",
    }


def test_the_data_access_role_reads_the_input_writes_the_output_and_trusts_healthimaging_for_its_datastore(
    datastore_eu: Datastore,
) -> None:
    document = policy("data-access", "--datastore", "Archive")
    assert statement(document, "ReadTheInput")["Resource"] == [
        "arn:aws:s3:::pacs-export/incoming/*"
    ]
    assert statement(document, "WriteTheResults") == {
        "Sid": "WriteTheResults",
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::pacs-results/jobs/*",
    }
    trust = policy("trust", "--datastore", "Archive")
    assert trust["Statement"] == [
        {
            "Sid": "HealthImagingForThisDatastoreOnly",
            "Effect": "Allow",
            "Principal": {"Service": "medical-imaging.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnEquals": {"aws:SourceArn": DATASTORE_ARN},
            },
        }
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("app", "--datastore", "Nope"),
            "--datastore: no datastore named Nope (configured: Archive).",
        ),
        (("trust",), "trust: name one datastore with --datastore NAME."),
        (("app", "--input", "http://x/"), "--input 'http://x/': "),
    ],
)
def test_a_bad_option_is_refused_with_exit_1_naming_it(
    datastore_eu: Datastore, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError) as refused:
        call_command("iam_policy", *args)
    assert refused.value.returncode == 1
    assert str(refused.value).startswith(message)


def test_a_datastore_without_its_role_arn_or_id_says_what_to_set(db: None) -> None:
    with pytest.raises(CommandError, match="No datastore is configured"):
        call_command("iam_policy", "app")
    Datastore.objects.create(
        name="Half set up",
        region="us-east-1",
        datastore_id="",
        role_arn=ROLE,
        input_s3_uri="s3://b/in/",
        output_s3_uri="s3://b/out/",
    )
    with pytest.raises(
        CommandError, match="Half set up.*set its HealthImaging datastore ID first"
    ):
        call_command("iam_policy", "app")
    Datastore.objects.filter(name="Half set up").update(
        datastore_id=DATASTORE_ID, role_arn=""
    )
    with pytest.raises(CommandError, match="set its data access role ARN"):
        call_command("iam_policy", "trust", "--datastore", "Half set up")
