"""A refused composer change comes back as the composer, with the reason inside the form that was refused.

htmx swaps the answer into #composer only because base.html's htmx-config swaps 409 and 422 (htmx 2 swaps no 4xx by
default), so these tests pin the statuses, where the reason is, and that what was typed survives.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from imports.drafts import services as drafts
from imports.models import ImportDraft
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    SERIES_A1,
    STUDY_A,
    STUDY_FILE,
    make_datastore,
    scan_prefix,
    seed_prefix,
)

HX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def draft(db: None, localaws: LocalAWSHandle, alice: User) -> ImportDraft:
    seed_prefix(localaws)
    scan_prefix()
    return drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )


def url(name: str, draft: ImportDraft) -> str:
    return reverse(f"imports:{name}", args=[draft.pk])


def form_html(content: str, action: str) -> str:
    """The HTML of the <form> that posts to `action`."""
    start = content.index(f'action="{action}"')
    return content[start : content.index("</form>", start)]


def test_the_htmx_config_swaps_refusals_and_conflicts_into_the_target(
    client_alice: Client, draft: ImportDraft
) -> None:
    content = client_alice.get(url("draft_detail", draft)).content.decode()
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", content)
    assert meta is not None
    config = json.loads(meta.group(1))
    assert config["includeIndicatorStyles"] is False  # the CSP allows no inline <style>

    def handling(status: int) -> dict[str, object]:
        # As htmx 2 resolves it: the first entry whose pattern is found in the status.
        return next(
            rule
            for rule in config["responseHandling"]
            if re.search(rule["code"], str(status))
        )

    for status in (409, 422):
        assert handling(status)["swap"] is True
        assert handling(status).get("error") is False
    # A bare 400 (a request the page did not send as it is) and a 500 are errors, not fragments.
    assert handling(400)["swap"] is False
    assert handling(500)["swap"] is False


def test_a_refused_job_name_is_shown_by_its_field_and_kept_as_typed(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        url("draft_settings", draft),
        {"version": draft.version, "job_name": "bad name!!", "output_s3_uri": OUTPUT},
        **HX,
    )
    assert response.status_code == 422
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="composer">')
    job_form = form_html(content, url("draft_settings", draft))
    assert 'id="refusal"' in job_form
    assert 'value="bad name!!"' in job_form
    assert "A job name is 1-64 characters" in job_form
    draft.refresh_from_db()
    assert (draft.version, draft.job_name) == (1, "")


def test_mapping_with_nothing_ticked_is_refused_in_the_map_form_and_keeps_the_path(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        url("draft_assign", draft), {"version": draft.version, "path": STUDY_FILE}, **HX
    )
    assert response.status_code == 422
    assign_form = form_html(response.content.decode(), url("draft_assign", draft))
    assert 'id="refusal"' in assign_form
    assert "Nothing was saved" in assign_form
    assert f'value="{STUDY_FILE}"' in assign_form
    assert not draft.mappings.exists()


def test_a_refused_mapping_keeps_its_ticks(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        url("draft_assign", draft),
        {"version": draft.version, "path": "../x.json", "target": [f"{STUDY_A}|{SERIES_A1}"]},
        **HX,
    )  # fmt: skip
    assert response.status_code == 422
    assign_form = form_html(response.content.decode(), url("draft_assign", draft))
    assert f'value="{STUDY_A}|{SERIES_A1}" checked' in assign_form
    assert f'value="{STUDY_A}|" aria-label' in assign_form  # not ticked, not checked


def test_a_bad_csv_lists_every_rows_problem_in_the_csv_form(
    client_alice: Client, draft: ImportDraft
) -> None:
    body = (
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        f"1.2.03a,,{STUDY_FILE}\n"
        f"{STUDY_A},,../x.json\n"
        f"{STUDY_A},{'1' * 513},{STUDY_FILE}\n"
    )
    response = client_alice.post(
        url("draft_upload_csv", draft),
        {
            "version": draft.version,
            "csv_file": SimpleUploadedFile("m.csv", body.encode()),
        },
        **HX,
    )
    assert response.status_code == 422
    csv_form = html.unescape(
        form_html(response.content.decode(), url("draft_upload_csv", draft))
    )
    assert "3 problems" in csv_form
    for row, message in [
        (1, "UID contains 'a'"),
        (2, "has a '.' or '..' segment"),
        (3, "HealthImaging accepts at most 512"),
    ]:
        assert f"Row {row}" in csv_form
        assert message in csv_form
    assert not draft.mappings.exists()


def test_a_stale_tabs_save_is_a_conflict_that_shows_the_newer_state(
    client_alice: Client, draft: ImportDraft
) -> None:
    # The other tab renamed the job; this one, still at version 1, saves its own name.
    drafts.draft_update_settings(
        draft=draft, actor=None, version=1, job_name="from-the-other-tab", output_s3_uri=OUTPUT
    )  # fmt: skip
    response = client_alice.post(
        url("draft_settings", draft),
        {"version": 1, "job_name": "from-this-tab", "output_s3_uri": OUTPUT},
        **HX,
    )
    assert response.status_code == 409
    content = response.content.decode()
    top = content[: content.index('id="problems-panel"')]
    assert "This draft changed since you opened it" in top
    assert 'name="version" value="2"' in content
    assert "from-the-other-tab" in content
    draft.refresh_from_db()
    assert draft.job_name == "from-the-other-tab"
