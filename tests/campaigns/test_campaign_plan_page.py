"""Planning and starting a campaign from the Campaigns page: the plan shown with Start, every refusal on its
field, and nothing stored (nor audited) for a refused plan."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from imports.models import AuditEvent, Campaign, Datastore
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, OBJECTS, STAGING, STUDY1

pytestmark = pytest.mark.django_db

PLAN = reverse("imports:campaign_plan")


def form(datastore: Datastore, **fields: str) -> dict[str, Any]:
    data = {
        "datastore": str(datastore.pk),
        "inputs": ARCHIVE,
        "max_files": "4",
        "max_bytes": "",
        "staging": STAGING,
    }
    data.update(fields)
    return data


def refused(client: Client, data: dict[str, Any]) -> str:
    response = client.post(PLAN, data)
    assert response.status_code == 400
    assert not Campaign.objects.exists()
    assert not AuditEvent.objects.filter(
        action=AuditEvent.Action.CAMPAIGN_PLANNED
    ).exists()
    return response.content.decode()


def field_errors(page: str, field: str) -> str:
    """The text of the errors shown under one field (each carries the field's id)."""
    marker = f'id="id_{field}_error">'
    return " ".join(part.split("</p>")[0] for part in page.split(marker)[1:])


def test_operators_get_the_plan_form_and_viewers_do_not(
    client_alice: Client,
    client_bob: Client,
    archive: Datastore,
    django_assert_max_num_queries: Any,
) -> None:
    with django_assert_max_num_queries(10):
        page = client_alice.get(reverse("imports:campaign_list")).content.decode()
    assert "Plan a campaign" in page
    assert f'<option value="{archive.pk}">{archive.name}</option>' in page
    assert (
        "Plan a campaign"
        not in client_bob.get(reverse("imports:campaign_list")).content.decode()
    )


def test_a_plan_from_the_page_is_stored_and_shown_with_its_start_button(
    client_alice: Client, archive: Datastore
) -> None:
    response = client_alice.post(PLAN, form(archive))
    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "imports:campaign_detail", args=[campaign.pk]
    )
    assert campaign.state == Campaign.State.PLANNED
    assert (campaign.max_files, campaign.staging_uri) == (4, STAGING)
    assert campaign.object_count == OBJECTS
    jobs = campaign.jobs.count()
    assert jobs >= 3
    page = client_alice.get(response["Location"]).content.decode()
    assert f"Campaign {campaign.pk} planned: {jobs} jobs for {OBJECTS} objects." in page
    assert (
        f"The plan: <strong>{jobs}</strong> jobs for <strong>{OBJECTS}</strong> objects, "
        f"<strong>{campaign.staged_objects}</strong> of them staged first"
    ) in page
    assert "Start campaign" in page
    event = AuditEvent.objects.get(action=AuditEvent.Action.CAMPAIGN_PLANNED)
    assert event.actor_username == "alice"


def test_limits_above_the_datastores_quota_are_refused_on_their_fields(
    client_alice: Client, archive: Datastore
) -> None:
    page = refused(
        client_alice, form(archive, max_files=str(archive.max_files_per_job + 1))
    )
    assert field_errors(page, "max_files").startswith(
        f"{archive.max_files_per_job + 1}: give 1 to {archive.max_files_per_job:,} files"
    )
    assert field_errors(page, "inputs") == ""
    page = refused(
        client_alice, form(archive, max_bytes=str(archive.max_bytes_per_job + 1))
    )
    assert f"give 1 to {archive.max_bytes_per_job:,} bytes" in field_errors(
        page, "max_bytes"
    )
    page = refused(client_alice, form(archive, max_files="0"))
    assert field_errors(page, "max_files").startswith("enter a whole number from 1")


def test_a_folder_without_a_scan_and_a_malformed_uri_are_refused_on_the_inputs(
    client_alice: Client, archive: Datastore
) -> None:
    page = refused(client_alice, form(archive, inputs="s3://archive/other/"))
    assert "s3://archive/other/: this prefix has no completed scan" in field_errors(
        page, "inputs"
    )
    page = refused(client_alice, form(archive, inputs=f"{ARCHIVE}\nhttp://archive/in/"))
    errors = field_errors(page, "inputs")
    assert errors.startswith("line 2: “http://archive/in/” is not an S3 URI")
    assert "line 1" not in errors
    page = refused(client_alice, form(archive, inputs="  \n "))
    assert field_errors(page, "inputs") == (
        "give at least one scanned folder, such as s3://pacs-export/2019/."
    )
    page = refused(client_alice, form(archive, inputs=f"{ARCHIVE}\n{ARCHIVE}study3/"))
    assert "overlap; give each folder once" in field_errors(page, "inputs")


def test_a_plan_that_must_stage_without_a_staging_prefix_says_so_on_that_field(
    client_alice: Client, archive: Datastore
) -> None:
    page = refused(client_alice, form(archive, staging=""))
    assert "jobs must be staged" in field_errors(page, "staging")
    page = refused(client_alice, form(archive, staging=f"{ARCHIVE}staging/"))
    assert "the copies must stay out of the sources" in field_errors(page, "staging")


def test_start_from_the_page_is_refused_when_a_source_changed(
    client_alice: Client, archive: Datastore, localaws: LocalAWSHandle
) -> None:
    client_alice.post(PLAN, form(archive))
    campaign = Campaign.objects.get()
    localaws.put(f"{ARCHIVE}study3/late.dcm", b"added after the scan")
    start = reverse("imports:campaign_start", args=[campaign.pk])
    page = client_alice.post(start, follow=True).content.decode()
    assert "were added, removed or rewritten since its scan" in page
    assert Campaign.objects.get().state == Campaign.State.PLANNED
    assert not AuditEvent.objects.filter(
        action=AuditEvent.Action.CAMPAIGN_STARTED
    ).exists()


def test_start_from_the_page_runs_once(
    client_alice: Client, archive: Datastore
) -> None:
    client_alice.post(PLAN, form(archive))
    campaign = Campaign.objects.get()
    start = reverse("imports:campaign_start", args=[campaign.pk])
    page = client_alice.post(start, follow=True).content.decode()
    assert f"Campaign {campaign.pk} started" in page
    assert Campaign.objects.get().state == Campaign.State.RUNNING
    again = client_alice.post(start, follow=True).content.decode()
    assert "it was started already, and nothing was submitted again" in again
    assert [
        e.actor_username
        for e in AuditEvent.objects.filter(action=AuditEvent.Action.CAMPAIGN_STARTED)
    ] == ["alice"]


def test_a_mappings_csv_uploaded_with_the_plan_maps_its_jobs(
    client_alice: Client, archive: Datastore
) -> None:
    csv = SimpleUploadedFile(
        "mappings.csv",
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{STUDY1},,meta/study1.json\n".encode(),
        content_type="text/csv",
    )
    response = client_alice.post(PLAN, {**form(archive), "mappings": csv})
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    mapped = [m for job in campaign.jobs.all() for m in job.mappings]
    assert mapped
    assert {m["metadataFilePath"].rsplit("/", 1)[-1] for m in mapped} == {"study1.json"}


def test_a_malformed_mappings_csv_is_refused_on_its_field_and_nothing_is_stored(
    client_alice: Client, archive: Datastore
) -> None:
    csv = SimpleUploadedFile(
        "mappings.csv",
        b"studyInstanceUID,seriesInstanceUID,metadataFilePath\nnot-a-uid,,meta/study1.json\n",
        content_type="text/csv",
    )
    page = refused(client_alice, {**form(archive), "mappings": csv})
    errors = field_errors(page, "mappings")
    assert "row 1, studyInstanceUID" in errors
    assert "only digits 0-9" in errors


def test_a_mapped_file_under_no_folder_is_refused_on_the_mappings_field(
    client_alice: Client, archive: Datastore
) -> None:
    csv = SimpleUploadedFile(
        "mappings.csv",
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{STUDY1},,elsewhere/study1.json\n".encode(),
        content_type="text/csv",
    )
    page = refused(client_alice, {**form(archive), "mappings": csv})
    assert "is under none of the inputs" in field_errors(page, "mappings")
