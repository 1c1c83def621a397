"""Every Datastore field rejects what HealthImaging would reject, with a message that says why."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from imports.models import AuditEvent, Datastore

VALID = {
    "name": "Radiology",
    "region": "us-east-1",
    "datastore_id": "0123456789abcdef0123456789abcdef",
    "role_arn": "arn:aws:iam::123456789012:role/HealthImagingImportRole",
    "input_s3_uri": "s3://dicom-input/incoming/",
    "output_s3_uri": "s3://dicom-output/results/",
    "input_owner_account_id": "",
    "max_files_per_job": 5000,
    "max_bytes_per_job": 10 * 1000**3,
    "max_concurrent_jobs": 100,
    "start_jobs_per_second": 1.0,
}


def errors_for(**overrides: object) -> dict[str, list[str]]:
    datastore = Datastore(**{**VALID, **overrides})
    try:
        datastore.full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


def test_it_accepts_a_valid_datastore(db: None) -> None:
    assert errors_for() == {}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "datastore_id",
            "0123456789ABCDEF0123456789ABCDEF",
            "exactly 32 lowercase letters and digits",
        ),
        ("datastore_id", "0123456789abcdef", "exactly 32 lowercase letters and digits"),
        (
            "datastore_id",
            "0123456789abcdef0123456789abcde!",
            "exactly 32 lowercase letters and digits",
        ),
        (
            "role_arn",
            "arn:aws:iam::123456789012:user/bob",
            "expected arn:aws:iam::<12-digit account>:role/",
        ),
        (
            "role_arn",
            "arn:aws:iam::12345:role/x",
            "expected arn:aws:iam::<12-digit account>:role/",
        ),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/<script>",
            "1-64 of letters, digits and + = , . @ _ -",
        ),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/ops/" + "r" * 65,
            "1-64 of letters, digits and + = , . @ _ -",
        ),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/a<b>/Role",
            "1-64 of letters, digits and + = , . @ _ -",
        ),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/path/",
            "1-64 of letters, digits and + = , . @ _ -",
        ),
        ("role_arn", "arn:aws:iam::1:role", "HealthImaging accepts 20 to 2048"),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/" + "r" * 2100,
            "HealthImaging accepts 20 to 2048",
        ),
        (
            "input_s3_uri",
            "https://dicom-input/incoming/",
            "expected s3://<bucket>/<prefix>",
        ),
        (
            "input_s3_uri",
            "s3://Dicom-Input/incoming/",
            "expected s3://<bucket>/<prefix>",
        ),
        ("input_s3_uri", "s3://ab", "expected s3://<bucket>/<prefix>"),
        ("input_s3_uri", "s3://dicom-input/" + "k" * 1020, "at most 1024"),
        ("output_s3_uri", "s3://dicom-output/results", "must end with “/”"),
        ("output_s3_uri", "s3://-dicom-output/", "expected s3://<bucket>/<prefix>"),
        ("input_owner_account_id", "12345678901", "exactly 12 digits"),
        ("input_owner_account_id", "12345678901a", "exactly 12 digits"),
        ("region", "us-east-2", "HealthImaging is not available in “us-east-2”"),
        ("max_files_per_job", 0, "greater than or equal to 1"),
        ("max_concurrent_jobs", 0, "greater than or equal to 1"),
        ("max_bytes_per_job", 11 * 1000**3, "less than or equal to 10000000000"),
        ("name", "", "This field cannot be blank."),
    ],
)
def test_it_rejects_each_invalid_field_with_a_clear_message(
    db: None, field: str, value: object, expected: str
) -> None:
    errors = errors_for(**{field: value})
    assert list(errors) == [field]
    assert expected in " ".join(errors[field])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("datastore_id", "abcdefghijklmnopqrstuvwxyz012345"),
        ("role_arn", "arn:aws-us-gov:iam::123456789012:role/path/to/Role"),
        ("role_arn", "arn:aws:iam::123456789012:role/r"),
        (
            "role_arn",
            "arn:aws:iam::123456789012:role/service-role/HI+Import=1,a.b@c_d-e",
        ),
        ("role_arn", "arn:aws-cn:iam::123456789012:role/" + "r" * 64),
        ("input_s3_uri", "s3://dicom.input-2"),
        ("input_s3_uri", "s3://dicom-input/a folder/with spaces/"),
        ("output_s3_uri", "s3://dicom-output/"),
        ("input_owner_account_id", "123456789012"),
        ("region", "eu-west-2"),
        ("max_files_per_job", 20000),
        ("max_bytes_per_job", 1),
    ],
)
def test_it_accepts_each_valid_variant(db: None, field: str, value: object) -> None:
    assert errors_for(**{field: value}) == {}


RATE_MESSAGE = (
    "Enter a rate between 0.1 and 40 submissions per second. AWS's older throttling page lists "
    "StartDICOMImportJob at 1 per second (burst 2), a newer one at 40 per second (burst 80)."
)


@pytest.mark.parametrize(
    "rate", [0.0, 0.09, -1.0, 40.01, 80.0, float("nan"), float("inf")]
)
def test_it_rejects_a_submission_rate_outside_0_1_to_40_and_says_both_aws_figures(
    db: None, rate: float
) -> None:
    assert errors_for(start_jobs_per_second=rate) == {
        "start_jobs_per_second": [RATE_MESSAGE]
    }


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0, 2.5, 40.0])
def test_it_accepts_a_submission_rate_from_0_1_to_40(db: None, rate: float) -> None:
    assert errors_for(start_jobs_per_second=rate) == {}


def test_a_new_datastore_submits_one_job_a_second(db: None) -> None:
    fields = {k: v for k, v in VALID.items() if k != "start_jobs_per_second"}
    assert Datastore.objects.create(**fields).start_jobs_per_second == 1.0


def test_the_admin_edits_the_submission_rate_and_audits_it(
    client_carol: Client,
) -> None:
    client_carol.post("/admin/imports/datastore/add/", admin_form_data())
    datastore = Datastore.objects.get()
    page = client_carol.get(
        f"/admin/imports/datastore/{datastore.pk}/change/"
    ).content.decode()
    assert 'name="start_jobs_per_second"' in page
    refused = client_carol.post(
        f"/admin/imports/datastore/{datastore.pk}/change/",
        admin_form_data(start_jobs_per_second="41"),
    )
    assert refused.status_code == 200
    assert (
        "Enter a rate between 0.1 and 40 submissions per second"
        in refused.content.decode()
    )
    response = client_carol.post(
        f"/admin/imports/datastore/{datastore.pk}/change/",
        admin_form_data(start_jobs_per_second="40"),
    )
    assert response.status_code == 302
    datastore.refresh_from_db()
    assert datastore.start_jobs_per_second == 40.0
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_CHANGED)
    assert event.details == {
        "changes": {"start_jobs_per_second": {"before": 1.0, "after": 40.0}}
    }


def test_it_rejects_the_same_datastore_twice_in_one_region(db: None) -> None:
    Datastore.objects.create(**VALID)
    errors = errors_for(name="Another name")
    assert "This datastore ID is already configured for this region" in str(errors)


def admin_form_data(**overrides: object) -> dict[str, object]:
    # The admin's form shows both boxes ticked by default, as their model defaults are.
    data = {**VALID, "enabled": "on", "require_approval": "on", **overrides}
    return {key: value for key, value in data.items() if value is not None}


def test_the_admin_saves_a_valid_datastore_and_audits_it(client_carol: Client) -> None:
    response = client_carol.post("/admin/imports/datastore/add/", admin_form_data())
    assert response.status_code == 302
    datastore = Datastore.objects.get()
    assert datastore.datastore_id == VALID["datastore_id"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_CREATED)
    assert event.actor_username == "carol"
    assert event.target_id == str(datastore.pk)
    assert event.details["after"]["datastore_id"] == VALID["datastore_id"]
    assert event.details["after"]["enabled"] is True


def test_a_datastore_changed_in_the_admin_is_audited_before_and_after(
    client_carol: Client,
) -> None:
    client_carol.post("/admin/imports/datastore/add/", admin_form_data())
    datastore = Datastore.objects.get()
    response = client_carol.post(
        f"/admin/imports/datastore/{datastore.pk}/change/",
        admin_form_data(name="Radiology archive", enabled=None),
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_CHANGED)
    assert event.details == {
        "changes": {
            "name": {"before": VALID["name"], "after": "Radiology archive"},
            "enabled": {"before": True, "after": False},
        }
    }
    assert event.summary == "Changed datastore “Radiology archive”: name, enabled"


def test_a_datastore_deleted_in_the_admin_is_audited_with_its_settings(
    client_carol: Client,
) -> None:
    client_carol.post("/admin/imports/datastore/add/", admin_form_data())
    datastore = Datastore.objects.get()
    client_carol.post(
        f"/admin/imports/datastore/{datastore.pk}/delete/", {"post": "yes"}
    )
    assert not Datastore.objects.exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_DELETED)
    assert event.details["before"]["role_arn"] == VALID["role_arn"]


def test_the_admin_shows_each_error_and_saves_nothing(client_carol: Client) -> None:
    response = client_carol.post(
        "/admin/imports/datastore/add/",
        admin_form_data(
            datastore_id="NOPE",
            role_arn="arn:aws:iam::1:user/x",
            output_s3_uri="s3://out/x",
        ),
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "is not a HealthImaging datastore ID" in content
    assert "is not an IAM role ARN" in content
    assert "must end with “/”" in content
    assert not Datastore.objects.exists()
    assert not AuditEvent.objects.filter(target_type="imports.datastore").exists()


def test_the_command_adds_a_datastore(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "datastore", "add", "--name", "Radiology", "--region", "us-east-1",
        "--datastore-id", VALID["datastore_id"], "--role-arn", VALID["role_arn"],
        "--input", VALID["input_s3_uri"], "--output", VALID["output_s3_uri"],
        "--input-owner-account-id", "123456789012",
    )  # fmt: skip
    datastore = Datastore.objects.get()
    assert datastore.input_owner_account_id == "123456789012"
    assert "Added datastore “Radiology”" in capsys.readouterr().out


def test_the_command_names_each_bad_option_and_saves_nothing(db: None) -> None:
    with pytest.raises(CommandError) as raised:
        call_command(
            "datastore", "add", "--name", "Radiology", "--region", "us-east-1",
            "--datastore-id", "short", "--role-arn", VALID["role_arn"],
            "--input", "http://nope", "--output", VALID["output_s3_uri"],
            "--input-owner-account-id", "42",
        )  # fmt: skip
    message = str(raised.value)
    assert "--datastore-id: “short” is not a HealthImaging datastore ID" in message
    assert "--input: “http://nope” is not an S3 URI" in message
    assert "--input-owner-account-id: “42” is not an AWS account ID" in message
    assert not Datastore.objects.exists()


def test_the_command_lists_datastores(
    datastore: Datastore, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("datastore", "list")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "REGION",
        "DATASTORE",
        "ID",
        "INPUT",
        "OUTPUT",
        "ENABLED",
    ]
    assert lines[1].split() == [
        "Radiology", "us-east-1", datastore.datastore_id, datastore.input_s3_uri, datastore.output_s3_uri, "yes",
    ]  # fmt: skip


def test_turning_off_the_approval_of_patient_changes_in_the_admin_is_audited(
    client_carol: Client,
) -> None:
    client_carol.post("/admin/imports/datastore/add/", admin_form_data())
    datastore = Datastore.objects.get()
    assert datastore.require_approval is True
    response = client_carol.post(
        f"/admin/imports/datastore/{datastore.pk}/change/",
        admin_form_data(require_approval=None),
    )
    assert response.status_code == 302
    datastore.refresh_from_db()
    assert datastore.require_approval is False
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATASTORE_CHANGED)
    assert event.actor_username == "carol"
    assert event.details == {
        "changes": {"require_approval": {"before": True, "after": False}}
    }
    assert event.summary.endswith("(approval of patient changes turned OFF)")
