"""“Check connection”: each outcome becomes a plain sentence, in the admin and on the command line.

botocore's Stubber pins the exact parameters sent to AWS; the unreachable-endpoint and
no-credentials cases use real botocore clients against a closed port and an empty environment.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from django.core.management import CommandError, call_command
from django.test import Client

from imports import datastores
from imports.aws import client as aws
from imports.models import AuditEvent, Datastore

DATASTORE_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.reset_clients()


@pytest.fixture
def stubs(fake_credentials: None) -> Iterator[tuple[Stubber, Stubber]]:
    with (
        Stubber(aws.healthimaging_client("us-east-1")) as hi,
        Stubber(aws.s3_client("us-east-1")) as s3,
    ):
        yield hi, s3
        hi.assert_no_pending_responses()
        s3.assert_no_pending_responses()


def get_datastore_ok(hi: Stubber, status: str = "ACTIVE") -> None:
    hi.add_response(
        "get_datastore",
        {
            "datastoreProperties": {
                "datastoreId": DATASTORE_ID,
                "datastoreName": "radiology",
                "datastoreStatus": status,
            }
        },
        {"datastoreId": DATASTORE_ID},
    )


def list_ok(s3: Stubber, contents: list[dict[str, Any]] | None = None) -> None:
    s3.add_response(
        "list_objects_v2",
        {
            "IsTruncated": False,
            "Contents": contents or [],
            "KeyCount": len(contents or []),
        },
        {
            "Bucket": "dicom-input",
            "Prefix": "incoming/",
            "Delimiter": "/",
            "MaxKeys": 1,
        },
    )


def marker_key() -> Any:
    return ANY


def put_ok(s3: Stubber, bucket: str = "dicom-output") -> None:
    s3.add_response(
        "put_object",
        {"ETag": '"abc"'},
        {
            "Bucket": bucket,
            "Key": ANY,
            "Body": b"connection check\n",
            "ContentType": "text/plain",
        },
    )


def delete_ok(s3: Stubber, bucket: str = "dicom-output") -> None:
    s3.add_response("delete_object", {}, {"Bucket": bucket, "Key": ANY})


def input_write_ok(s3: Stubber) -> None:
    """The marker written then deleted under the input prefix (the metadata editor saves there)."""
    put_ok(s3, "dicom-input")
    delete_ok(s3, "dicom-input")


def check(datastore: Datastore) -> dict[str, tuple[bool, str]]:
    return {
        r.name: (r.ok, r.message)
        for r in datastores.datastore_check_connection(datastore=datastore, actor=None)
    }


def test_it_passes_when_everything_answers(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3, [{"Key": "incoming/a.dcm", "Size": 1, "ETag": '"e"'}])
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore) == {
        "Datastore": (True, "Datastore “radiology” is ACTIVE."),
        "Input prefix": (True, "s3://dicom-input/incoming/ can be listed."),
        "Input prefix (write)": (
            True,
            "s3://dicom-input/incoming/ is writable (a test object was written and deleted): "
            "the metadata editor can save files there.",
        ),
        "Output prefix": (
            True,
            "s3://dicom-output/results/ is writable (a test object was written and deleted).",
        ),
    }
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_CHECKED)
    assert event.summary == "Checked connection of “Radiology”: all checks passed"
    assert [r["ok"] for r in event.details["results"]] == [True, True, True, True]


def test_it_writes_and_deletes_the_same_marker_under_the_output_prefix(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    keys: list[str] = []
    s3.client.meta.events.register(
        "before-parameter-build.s3.*",
        lambda params, **_: keys.append(params.get("Key", "")),
    )
    get_datastore_ok(hi)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    check(datastore)
    assert len(keys) == 5
    assert keys[1] == keys[2]
    assert re.fullmatch(r"incoming/\.dashboard-connection-check-[0-9a-f]{32}", keys[1])
    assert keys[3] == keys[4]
    assert re.fullmatch(r"results/\.dashboard-connection-check-[0-9a-f]{32}", keys[3])


def test_it_says_the_input_prefix_is_empty(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore)["Input prefix"] == (
        True,
        "s3://dicom-input/incoming/ can be listed; it is empty for now.",
    )


@pytest.mark.parametrize("status", ["CREATING", "CREATE_FAILED", "DELETING"])
def test_it_fails_a_datastore_that_is_not_active(
    datastore: Datastore, stubs: tuple[Stubber, Stubber], status: str
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi, status)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore)["Datastore"] == (
        False,
        f"Datastore “radiology” is {status}; imports need it to be ACTIVE.",
    )
    assert AuditEvent.objects.get().summary.endswith("problems found")


def test_it_reports_an_unknown_datastore(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    hi.add_client_error("get_datastore", "ResourceNotFoundException", "not found", 404)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore)["Datastore"] == (
        False,
        f"There is no datastore {DATASTORE_ID} in us-east-1: check the ID and the region.",
    )


def test_it_reports_a_denied_get_datastore(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    hi.add_client_error(
        "get_datastore", "AccessDeniedException", "User is not authorized", 403
    )
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    ok, message = check(datastore)["Datastore"]
    assert not ok
    assert message.startswith(
        "The dashboard may not call medical-imaging:GetDatastore (AccessDeniedException)"
    )


def test_it_reports_a_throttled_get_datastore(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    hi.add_client_error("get_datastore", "ThrottlingException", "Rate exceeded", 429)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore)["Datastore"] == (
        False,
        f"HealthImaging did not answer: GetDatastore {DATASTORE_ID} in us-east-1: ThrottlingException (Rate exceeded)",
    )


def test_it_reports_a_prefix_it_cannot_list(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    s3.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    assert check(datastore)["Input prefix"] == (
        False,
        "The dashboard cannot list s3://dicom-input/incoming/: AccessDenied.",
    )


def test_it_reports_a_missing_bucket(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    s3.add_client_error(
        "list_objects_v2", "NoSuchBucket", "The specified bucket does not exist", 404
    )
    for _ in ("input", "output"):
        s3.add_client_error(
            "put_object", "NoSuchBucket", "The specified bucket does not exist", 404
        )
    results = check(datastore)
    assert results["Input prefix"] == (
        False,
        "Bucket “dicom-input” does not exist (NoSuchBucket).",
    )
    assert results["Output prefix"] == (
        False,
        "Bucket “dicom-output” does not exist (NoSuchBucket).",
    )


def test_it_reports_an_output_prefix_it_cannot_write(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3)
    input_write_ok(s3)
    s3.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    assert check(datastore)["Output prefix"] == (
        False,
        "The dashboard cannot write to s3://dicom-output/results/: AccessDenied.",
    )


def test_it_says_when_the_editor_may_not_write_under_the_input_prefix(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3)
    s3.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    put_ok(s3)
    delete_ok(s3)
    results = check(datastore)
    assert results["Input prefix (write)"] == (
        False,
        "The dashboard cannot write to s3://dicom-input/incoming/: AccessDenied. "
        "The metadata editor cannot save files there (it needs s3:PutObject).",
    )
    assert results["Input prefix"][0]
    assert results["Output prefix"][0]


def test_it_reports_a_marker_it_cannot_delete(
    datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    s3.add_client_error("delete_object", "AccessDenied", "Access Denied", 403)
    ok, message = check(datastore)["Output prefix"]
    assert not ok
    assert "but cannot delete it (AccessDenied); delete it by hand." in message


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_it_reports_an_unreachable_endpoint(
    datastore: Datastore,
    fake_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    settings.AWS_MAX_ATTEMPTS = 1
    settings.AWS_CONNECT_TIMEOUT = 1
    aws.reset_clients()
    results = check(datastore)
    assert not any(ok for ok, _ in results.values())
    assert results["Datastore"][1] == (
        f"HealthImaging did not answer: GetDatastore {DATASTORE_ID} in us-east-1: "
        f"could not connect to http://127.0.0.1:{port}/datastore/{DATASTORE_ID}."
    )
    assert results["Input prefix"][1].startswith(
        "S3 did not answer: Listing s3://dicom-input/incoming/: could not connect"
    )


def test_it_reports_missing_credentials(
    datastore: Datastore, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    aws.reset_clients()
    ok, message = check(datastore)["Datastore"]
    assert not ok
    assert "no AWS credentials were found" in message


def test_the_admin_action_shows_each_result(
    client_carol: Client, datastore: Datastore, stubs: tuple[Stubber, Stubber]
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi)
    list_ok(s3)
    input_write_ok(s3)
    s3.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    response = client_carol.post(
        "/admin/imports/datastore/",
        {"action": "check_connection", "_selected_action": [datastore.pk]},
        follow=True,
    )
    content = response.content.decode()
    assert "Radiology · Datastore: Datastore “radiology” is ACTIVE." in content
    assert (
        "Radiology · Output prefix: The dashboard cannot write to s3://dicom-output/results/: AccessDenied."
        in content
    )


def test_the_admin_action_is_not_offered_without_the_permission(
    client_carol: Client, carol: Any, datastore: Datastore
) -> None:
    carol.groups.clear()
    carol.is_staff = True
    carol.save()
    response = client_carol.get("/admin/imports/datastore/")
    assert (
        response.status_code == 403
        or "check_connection" not in response.content.decode()
    )


def test_the_command_prints_each_result_and_fails_when_not_ready(
    datastore: Datastore,
    stubs: tuple[Stubber, Stubber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    hi, s3 = stubs
    get_datastore_ok(hi, "CREATING")
    list_ok(s3)
    input_write_ok(s3)
    put_ok(s3)
    delete_ok(s3)
    with pytest.raises(CommandError, match="“Radiology” is not ready for imports."):
        call_command("datastore", "check", "Radiology", no_color=True)
    out = capsys.readouterr().out
    assert (
        "FAIL Datastore: Datastore “radiology” is CREATING; imports need it to be ACTIVE."
        in out
    )
    assert (
        "ok   Input prefix: s3://dicom-input/incoming/ can be listed; it is empty for now."
        in out
    )


def test_the_command_names_known_datastores_for_an_unknown_name(
    datastore: Datastore,
) -> None:
    with pytest.raises(
        CommandError, match="No datastore is named “Nope”. Known: Radiology."
    ):
        call_command("datastore", "check", "Nope")
