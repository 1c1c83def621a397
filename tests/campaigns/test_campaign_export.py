"""The per-object export (CSV and JSON Lines) and the campaign page's object list: every object once, its outcome,
job and reason; keys and reasons masked for viewers; audited; filtered by outcome; paged."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from imports.campaigns import selectors, services
from imports.models import AuditEvent, Campaign, CampaignObject, Datastore, ImportJob
from imports.views import campaigns as campaign_views
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import make_job, make_localaws_datastore
from tests.campaigns.conftest import (
    ARCHIVE,
    OBJECTS,
    SKIPPED,
    STAGING,
    STUDY3,
    scan_archive,
    seed_archive,
)

pytestmark = pytest.mark.django_db

# A file named after its patient, as many PACS exports name them: "Doe^Jane" is dicom_bytes' PatientName.
NAMED = f"{ARCHIVE}study3/Doe_Jane.dcm"
NAMED_KEY = NAMED.removeprefix("s3://archive/")
REASON = f"ValidationException: {NAMED_KEY} has no pixel data"


@pytest.fixture
def campaign(localaws: LocalAWSHandle) -> Campaign:
    """The campaigns world with one more file, named after its patient; one import job's outcomes in."""
    seed_archive(localaws)
    localaws.put(
        NAMED, dicom_bytes(study=STUDY3, series=STUDY3 + ".1", sop=STUDY3 + ".1.9")
    )
    scan_archive()
    datastore: Datastore = make_localaws_datastore(localaws)
    campaign = services.campaign_plan(
        actor=None,
        datastore=datastore,
        inputs=[ARCHIVE],
        max_files=4,
        staging_uri=STAGING,
    ).campaign
    job = campaign.jobs.get(input_s3_uri=f"{ARCHIVE}study3/")
    import_job = make_job(datastore, status=ImportJob.Status.COMPLETED)
    job.import_job = import_job
    job.save(update_fields=["import_job"])
    # The outcomes as accounting gives them (tests/campaigns/test_campaign_command.py runs that for real).
    job.objects_of.exclude(key=NAMED_KEY).update(
        outcome=CampaignObject.Outcome.IMPORTED, image_set_id="a" * 32, image_set_version=1, is_primary=True
    )  # fmt: skip
    job.objects_of.filter(key=NAMED_KEY).update(
        outcome=CampaignObject.Outcome.FAILED, reason=REASON
    )
    return campaign


def export(client: Client, campaign: Campaign, fmt: str, query: str = "") -> Any:
    name = "imports:campaign_export" + ("_jsonl" if fmt == "jsonl" else "")
    return client.get(reverse(name, args=[campaign.pk]) + query)


def test_the_csv_lists_every_object_once_with_its_outcome_job_and_reason(
    client_alice: Client, campaign: Campaign
) -> None:
    response = export(client_alice, campaign, "csv")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"] == (
        f'attachment; filename="campaign-{campaign.pk}-objects.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response).decode())))
    assert list(rows[0]) == selectors.OBJECT_FIELDS
    assert len(rows) == OBJECTS + 1
    assert len({(r["bucket"], r["key"]) for r in rows}) == OBJECTS + 1
    by_key = {r["key"]: r for r in rows}
    job = campaign.jobs.get(input_s3_uri=f"{ARCHIVE}study3/")
    failed = by_key[NAMED_KEY]
    assert (failed["outcome"], failed["job"], failed["import_job"], failed["reason"]) == (
        "failed", str(job.number), str(job.import_job_id), REASON,
    )  # fmt: skip
    imported = by_key["in/study3/0.dcm"]
    assert (imported["outcome"], imported["image_set_id"], imported["is_primary"]) == (
        "imported", "a" * 32, "True",
    )  # fmt: skip
    readme = by_key["in/readme.txt"]
    assert (readme["outcome"], readme["job"], readme["reason"]) == (
        "skipped", "", "not DICOM",
    )  # fmt: skip
    outcomes = [r["outcome"] for r in rows]
    assert outcomes.count("skipped") == SKIPPED
    assert outcomes.count("pending") == OBJECTS + 1 - SKIPPED - 3


def test_the_export_is_audited_with_its_filter_and_the_json_lines_take_one_outcome(
    client_alice: Client, campaign: Campaign
) -> None:
    response = export(client_alice, campaign, "jsonl", "?outcome=failed")
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in b"".join(response).decode().splitlines()]
    assert [(line["key"], line["outcome"]) for line in lines] == [(NAMED_KEY, "failed")]
    assert list(lines[0]) == selectors.OBJECT_FIELDS
    event = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED).get()
    assert (event.actor_username, event.target_id) == ("alice", str(campaign.pk))
    assert event.details == {
        "export": f"the objects of campaign {campaign.pk}",
        "format": "jsonl",
        "filters": {"outcome": "failed"},
    }
    assert event.summary == (
        f"Exported the objects of campaign {campaign.pk} as JSONL (outcome filtered)"
    )


def test_a_viewer_gets_keys_and_reasons_with_the_patient_masked(
    client_alice: Client, client_bob: Client, campaign: Campaign
) -> None:
    for fmt in ("csv", "jsonl"):
        viewer = b"".join(export(client_bob, campaign, fmt)).decode()
        assert "Doe_Jane" not in viewer
        assert "in/study3/D***.dcm" in viewer
        assert "ValidationException: in/study3/D***.dcm has no pixel data" in viewer
    operator = b"".join(export(client_alice, campaign, "csv")).decode()
    assert NAMED_KEY in operator
    assert REASON in operator


def test_an_unknown_outcome_is_refused_by_name_and_nothing_is_exported_or_audited(
    client_alice: Client, campaign: Campaign
) -> None:
    response = export(client_alice, campaign, "csv", "?outcome=lost")
    assert response.status_code == 400
    body = response.content.decode()
    assert body.startswith("Nothing was exported: outcome: “lost” is not an outcome")
    assert "imported, failed, skipped, not_imported or pending" in body
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED).exists()


def test_someone_in_no_role_exports_nothing(nobody: Any, campaign: Campaign) -> None:
    client = Client()
    client.force_login(nobody)
    assert export(client, campaign, "csv").status_code == 403
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED).exists()


def test_the_page_lists_the_objects_by_outcome_in_pages_in_bounded_queries(
    client_bob: Client,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_max_num_queries: Any,
) -> None:
    monkeypatch.setattr(campaign_views, "OBJECTS_PER_PAGE", 10)
    url = reverse("imports:campaign_detail", args=[campaign.pk])
    with django_assert_max_num_queries(18):
        first = client_bob.get(url).content.decode()
    assert f'Objects <span class="muted">({OBJECTS + 1})</span>' in first
    assert "Page 1 of 2" in first
    second = client_bob.get(url + "?page=2").content.decode()
    assert second.count("<tr class=") == OBJECTS + 1 - 10
    failed = client_bob.get(url + "?outcome=failed").content.decode()
    assert 'Objects <span class="muted">(1)</span>' in failed
    assert "in/study3/D***.dcm" in failed
    assert "Doe_Jane" not in failed
    assert "objects.csv?outcome=failed" in failed
    fragment = client_bob.get(url + "?outcome=skipped", headers={"HX-Request": "true"})
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="campaign-objects"')
    assert body.count("<tr class=") == SKIPPED
    # A malformed filter is not a refusal on the page: its own links show every object.
    assert (
        'Objects <span class="muted">(16)</span>'
        in client_bob.get(url + "?outcome=lost").content.decode()
    )
