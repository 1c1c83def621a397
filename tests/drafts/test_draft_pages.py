"""The composer's pages: preview with precedence and masking, CSV in and out, bad input, confirmation, query counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imports.dicom.patient import mask_value
from imports.drafts import preview
from imports.drafts import services as drafts
from imports.models import (
    AuditEvent,
    Datastore,
    DraftMapping,
    ImportDraft,
    ImportJob,
    ObjectHeader,
    Scan,
    ScanObject,
    ScanSeries,
    ScanStudy,
)
from localaws.testing import LocalAWSHandle, dicom_bytes
from tests.builders import (
    INPUT,
    OUTPUT,
    PREFIX,
    SERIES_A1,
    SERIES_A2,
    SERIES_FILE,
    STUDY_A,
    STUDY_B,
    STUDY_FILE,
    WRONG_VR_FILE,
    make_datastore,
    put_json,
    scan_prefix,
    seed_prefix,
)

HEADER = "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"


@pytest.fixture
def world(db: None, localaws: LocalAWSHandle) -> LocalAWSHandle:
    seed_prefix(localaws)
    return localaws


@pytest.fixture
def draft(world: LocalAWSHandle, alice: User) -> ImportDraft:
    scan_prefix()
    return drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )


def upload(client: Client, draft: ImportDraft, body: bytes | str, **extra: Any) -> Any:
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        reverse("imports:draft_upload_csv", args=[draft.pk]),
        {
            "version": draft.version,
            "csv_file": SimpleUploadedFile("m.csv", data, content_type="text/csv"),
        },
        **extra,
    )


# --- Preview --------------------------------------------------------------------------------


def preview_rows(client: Client, draft: ImportDraft, series: str) -> str:
    response = client.get(
        reverse("imports:draft_preview", args=[draft.pk]), {"series": series}
    )
    assert response.status_code == 200
    return response.content.decode()


def test_the_preview_shows_a_study_level_change_on_every_series_of_the_study(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_A, "")], path=STUDY_FILE
    )
    # Series 1 spelled the description differently: it changes, highlighted.
    a1 = description_row(preview_rows(client_alice, draft, SERIES_A1))
    assert "<td>CT Chest w/ contrast</td>" in a1
    assert "<td>CT CHEST W CONTRAST</td>" in a1
    assert '<span class="badge warn">changed</span> study file' in a1
    # Series 2 already had the canonical spelling: affected by the file, but unchanged.
    a2_page = preview_rows(client_alice, draft, SERIES_A2)
    assert 'class="state-unchanged"' in a2_page
    assert "changed</span>" not in description_row(a2_page)


def description_row(content: str) -> str:
    """The StudyDescription row of a preview page's one-instance table."""
    start = content.index(
        "StudyDescription (0008,1030)", content.index('id="one-instance"')
    )
    return content[start : content.index("</tr>", start)]


def test_the_preview_applies_a_series_file_to_its_series_only(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft,
        actor=None,
        version=1,
        targets=[(STUDY_A, SERIES_A2)],
        path=SERIES_FILE,
    )
    content = preview_rows(client_alice, draft, SERIES_A2)
    assert "T2 TSE AXIAL" in content
    assert "series file" in content
    # Only the mapped series is affected, so the picker lists it alone.
    assert SERIES_A1 not in content


def test_the_series_file_wins_over_the_study_file_for_what_it_names(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    a2 = description_row(preview_rows(client_alice, draft, SERIES_A2))
    assert "<td>SERIES WINS</td>" in a2
    assert "series file" in a2
    a1 = description_row(preview_rows(client_alice, draft, SERIES_A1))
    assert "<td>CT CHEST W CONTRAST</td>" in a1
    assert "study file" in a1


def test_the_preview_masks_patient_values_until_revealed_and_audits_the_reveal(
    client_alice: Client, client_bob: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_A, "")], path=STUDY_FILE
    )
    masked = preview_rows(client_alice, draft, SERIES_A1)
    assert "Doe^Jane" not in masked
    assert "D*** J***" in masked
    assert "PAT-1" not in masked
    response = client_alice.post(
        reverse("imports:draft_reveal", args=[draft.pk]), {"series": SERIES_A1}
    )
    assert response.status_code == 302
    assert "Doe^Jane" in preview_rows(client_alice, draft, SERIES_A1)
    assert AuditEvent.objects.filter(
        action="phi.revealed", target_id=str(draft.pk)
    ).exists()
    # A viewer can read the preview, masked, and cannot reveal.
    assert "Doe^Jane" not in preview_rows(client_bob, draft, SERIES_A1)
    assert (
        client_bob.post(reverse("imports:draft_reveal", args=[draft.pk])).status_code
        == 403
    )


def test_a_second_preview_costs_no_request(
    client_alice: Client, draft: ImportDraft, world: LocalAWSHandle
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_A, "")], path=STUDY_FILE
    )
    preview_rows(client_alice, draft, SERIES_A1)
    world.clear_calls()
    preview_rows(client_alice, draft, SERIES_A1)
    assert world.calls("s3", "GetObject") == []


@pytest.fixture
def mixed_draft(world: LocalAWSHandle, alice: User) -> ImportDraft:
    """Series A1 with 4 instances: 2 spell the description as the study file does, 2 do not."""
    for instance in (3, 4):
        world.put(
            f"{INPUT}{SERIES_A1}/{instance}.dcm",
            dicom_bytes(
                study=STUDY_A,
                series=SERIES_A1,
                sop=f"{SERIES_A1}.{instance}",
                SeriesNumber=1,
                InstanceNumber=instance,
                StudyDescription="CT CHEST W CONTRAST",
                SeriesDescription="series 1",
                PatientName="Doe^Jane",
                PatientID="PAT-1",
            ),
        )
    scan_prefix()
    draft = drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_A, "")], path=STUDY_FILE
    )
    return draft


def across_row(content: str, label: str) -> str:
    """An attribute's row in the preview's every-instance table, or "" when the table does not show it."""
    table = content[
        content.index('class="preview across"') : content.index('id="one-instance"')
    ]
    if label not in table:
        return ""
    start = table.index(label)
    return table[start : table.index("</tr>", start)]


def test_the_preview_shows_what_every_instance_becomes_with_counts(
    client_alice: Client, mixed_draft: ImportDraft
) -> None:
    page = preview_rows(client_alice, mixed_draft, SERIES_A1)
    assert "in <strong>2 of 4</strong> instances" in page
    row = across_row(page, "StudyDescription (0008,1030)")
    assert (
        row.count('<span class="muted">× 2</span>') == 2
    )  # two spellings now, two instances each
    assert "CT Chest w/ contrast" in row
    assert (
        'CT CHEST W CONTRAST <span class="muted">× 4</span>' in row
    )  # all four as imported
    assert '<span class="badge warn">2</span> study file' in row
    # An attribute the files do not touch, with a value per instance: listed, unchanged.
    sop = across_row(page, "SOPInstanceUID (0008,0018)")
    assert sop.count("× 1") == 8
    assert '<span class="muted">0</span>' in sop


def test_changed_only_leaves_out_the_attributes_no_instance_changes(
    client_alice: Client, mixed_draft: ImportDraft
) -> None:
    response = client_alice.get(
        reverse("imports:draft_preview", args=[mixed_draft.pk]),
        {"series": SERIES_A1, "changed": "1"},
    )
    page = response.content.decode()
    assert across_row(page, "StudyDescription (0008,1030)")
    assert across_row(page, "SOPInstanceUID (0008,0018)") == ""
    assert "Showing changed attributes only." in page


def test_the_every_instance_table_masks_patient_values_until_revealed(
    client_alice: Client, client_bob: Client, mixed_draft: ImportDraft
) -> None:
    for client in (client_alice, client_bob):
        row = across_row(
            preview_rows(client, mixed_draft, SERIES_A1), "PatientName (0010,0010)"
        )
        assert "Doe^Jane" not in row
        assert f'{mask_value("Doe^Jane")} <span class="muted">× 4</span>' in row
    client_alice.post(
        reverse("imports:draft_reveal", args=[mixed_draft.pk]), {"series": SERIES_A1}
    )
    row = across_row(
        preview_rows(client_alice, mixed_draft, SERIES_A1), "PatientName (0010,0010)"
    )
    assert 'Doe^Jane <span class="muted">× 4</span>' in row


def test_a_long_series_says_how_many_of_its_instances_were_read(
    client_alice: Client, mixed_draft: ImportDraft, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preview, "INSTANCES_READ_MAX", 3)
    page = preview_rows(client_alice, mixed_draft, SERIES_A1)
    assert "The first 3 of 4 instances were read" in page
    assert (
        "in <strong>2 of 3</strong> instances" in page
    )  # instances 1 and 2 change; 3 does not


def test_an_instance_gone_since_the_scan_is_counted_and_the_others_still_show(
    client_alice: Client, mixed_draft: ImportDraft, world: LocalAWSHandle
) -> None:
    cache.clear()  # headers another test read stay cached per object version
    world.s3_client().delete_object(Bucket="draft-in", Key=f"{PREFIX}{SERIES_A1}/4.dcm")
    page = preview_rows(client_alice, mixed_draft, SERIES_A1)
    assert "1 instance could not be read now." in page
    assert "in <strong>2 of 3</strong> instances" in page


# --- CSV ------------------------------------------------------------------------------------


def test_a_csv_round_trips(client_alice: Client, draft: ImportDraft) -> None:
    body = HEADER + f"{STUDY_A},,{STUDY_FILE}\n{STUDY_A},{SERIES_A2},{SERIES_FILE}\n"
    assert upload(client_alice, draft, body).status_code == 302
    exported = b"".join(
        client_alice.get(
            reverse("imports:draft_export", args=[draft.pk])
        ).streaming_content  # type: ignore[attr-defined]
    ).decode()
    assert exported.replace("\r\n", "\n") == body
    assert set(draft.mappings.values_list("metadata_etag", flat=True)) != {""}


def test_a_csv_with_a_byte_order_mark_is_accepted(
    client_alice: Client, draft: ImportDraft
) -> None:
    body = ("\ufeff" + HEADER + f"{STUDY_A},,{STUDY_FILE}\n").encode()
    assert upload(client_alice, draft, body).status_code == 302
    assert draft.mappings.count() == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{STUDY_A},,{STUDY_FILE}\n", "The first row must be exactly"),
        (HEADER.replace("\n", ",extra\n") + f"{STUDY_A},,{STUDY_FILE},x\n", "The first row must be exactly"),
        (HEADER + f"{STUDY_A},,{STUDY_FILE},surplus\n", "has 4 columns"),
        ((HEADER + f"{STUDY_A},,{STUDY_FILE}\n").encode("utf-16"), "looks like UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
        (HEADER + "".join(f"{STUDY_A}.{n},,{STUDY_FILE}\n" for n in range(1, 10_001)), "10,000 mappings"),
        (HEADER + f"1.2.abc,,{STUDY_FILE}\n", "Row 1"),
        (HEADER + f"{STUDY_A},,../../etc/passwd\n", "metadataFilePath"),
        (HEADER + f"{STUDY_A},,{STUDY_FILE}\n{STUDY_A},,{SERIES_FILE}\n", "maps the same study as row 1"),
        ("", "The submitted file is empty"),
    ],
    ids=["no-header", "extra-header-column", "extra-column", "utf-16", "binary", "10000-rows",
         "bad-uid", "traversal", "duplicate", "empty"],
)  # fmt: skip
def test_a_bad_csv_is_refused_with_a_reason_and_nothing_is_saved(
    client_alice: Client, draft: ImportDraft, body: str | bytes, message: str
) -> None:
    response = upload(client_alice, draft, body, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not DraftMapping.objects.exists()
    draft.refresh_from_db()
    assert draft.version == 1


def test_a_csv_is_refused_only_for_uids_healthimaging_refuses(
    client_alice: Client, draft: ImportDraft
) -> None:
    # HealthImaging takes a leading zero and 512 characters (a column of 64 answered 500 on PostgreSQL); the scan
    # decides whether the UID is one the job imports.
    long_uid = "1.2." + "3" * 508
    body = HEADER + f"{STUDY_A}.012,,{STUDY_FILE}\n{long_uid},,{SERIES_FILE}\n"
    assert upload(client_alice, draft, body).status_code == 302
    assert draft.mappings.count() == 2
    assert draft.mappings.filter(study_instance_uid=long_uid).exists()
    problems = drafts.draft_validate(draft=draft)
    found = [
        (p.row, p.severity, p.code) for p in problems if p.field == "studyInstanceUID"
    ]
    # No scanned file carries either UID.
    assert found == [
        (1, "error", "uid_leading_zero"),
        (2, "error", "uid_longer_than_dicom"),
    ]


# --- Hostile text ---------------------------------------------------------------------------


HOSTILE = '<script>alert("x")</script>{{ 7*7 }}\u202e"\''


def test_hostile_text_in_a_json_value_and_a_key_is_escaped_in_the_pages(
    client_alice: Client, world: LocalAWSHandle, alice: User
) -> None:
    path = 'metadata/<img src=x onerror=alert(1)>".json'
    put_json(
        world,
        path,
        {
            "0020000D": {"vr": "UI", "Value": [STUDY_B]},
            "00081030": {"vr": "LO", "Value": [HOSTILE]},
        },
    )
    scan_prefix()
    draft = drafts.draft_start(
        actor=alice,
        datastore=make_datastore(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )
    content = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert "<img src=x" not in content
    assert "&lt;img src=x onerror=alert(1)&gt;" in content
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=path
    )
    preview = client_alice.get(
        reverse("imports:draft_preview", args=[draft.pk])
    ).content.decode()
    assert "<script>alert" not in preview
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;{{ 7*7 }}" in preview
    exported = b"".join(
        client_alice.get(
            reverse("imports:draft_export", args=[draft.pk])
        ).streaming_content  # type: ignore[attr-defined]
    ).decode()
    assert (
        f'"{path.replace(chr(34), chr(34) * 2)}"' in exported
    )  # CSV-quoted, not mangled


# --- Composer page --------------------------------------------------------------------------


def test_the_composer_shows_problems_with_links_to_their_rows(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    content = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert '<a href="?rows_page=1&amp;studies_page=1#row-1">Row 1</a>' in content
    assert 'id="row-1" class="state-error"' in content
    assert "json_invalid" in content


def test_a_problem_names_its_study_by_description_date_and_modality(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    # A row for a study the scan never saw (as a loaded CSV can hold): nothing to name it by.
    DraftMapping.objects.create(
        draft=draft, study_instance_uid="2.25.999", metadata_file_path=WRONG_VR_FILE
    )
    composer = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    confirmation = client_alice.get(
        reverse("imports:draft_confirm", args=[draft.pk])
    ).content.decode()
    assert '#row-2">Row 2</a>' in composer
    assert '#row-2">Row 2</a>' in confirmation
    for page in (composer, confirmation):
        named = page.split('class="study-context muted"')
        assert (
            len(named) == 1 + 1
        )  # row 1's study; none for the study the scan never saw
        assert named[1].startswith(">(MR KNEE, 2024-01-02, CT)</span>")


def test_the_composer_says_which_file_wins_when_both_levels_are_mapped(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    content = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert "the series file wins for the attributes it names" in content


def test_a_viewer_reads_the_composer_without_any_control(
    client_bob: Client, draft: ImportDraft
) -> None:
    content = client_bob.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert 'id="tree"' in content
    assert 'name="target"' not in content
    assert "Accept all suggestions" not in content
    response = client_bob.post(
        reverse("imports:draft_accept_suggestions", args=[draft.pk]), {"version": 1}
    )
    assert response.status_code == 403
    assert not draft.mappings.exists()


def test_the_composer_query_count_does_not_grow_with_the_rows(
    client_alice: Client,
    draft: ImportDraft,
    django_assert_max_num_queries: Any,
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    url = reverse("imports:draft_detail", args=[draft.pk])
    with django_assert_max_num_queries(20):
        small = client_alice.get(url)
    assert small.status_code == 200
    # Many more studies, series and mappings: the same number of queries.
    scan = draft.scan
    assert scan is not None
    # More JSON files under the prefix too (a deferred field read per file once cost a query each).
    for n in range(1, 31):
        header = ObjectHeader.objects.create(
            bucket=scan.bucket,
            key=f"{scan.prefix}metadata/extra-{n}.json",
            etag=f"etag-{n}",
            size=2,
            kind=ObjectHeader.Kind.JSON,
            status=ObjectHeader.Status.JSON_VALID,
            json_document={},
        )
        ScanObject.objects.create(scan=scan, header=header)
    for n in range(1, 41):
        study = ScanStudy.objects.create(
            scan=scan, study_instance_uid=f"2.25.{n}", instance_count=1, bytes=1
        )
        for m in range(1, 4):
            ScanSeries.objects.create(
                study=study,
                series_instance_uid=f"2.25.{n}.{m}",
                instance_count=1,
                bytes=1,
            )
        DraftMapping.objects.create(
            draft=draft, study_instance_uid=f"2.25.{n}", metadata_file_path=STUDY_FILE
        )
    with django_assert_max_num_queries(20):
        large = client_alice.get(url)
    assert large.status_code == 200
    assert large.content.decode().count('class="series-row"') == 3 + 120


# --- Confirmation ---------------------------------------------------------------------------


def confirm(client: Client, draft: ImportDraft, **extra: Any) -> Any:
    draft.refresh_from_db()
    return client.post(
        reverse("imports:draft_confirm", args=[draft.pk]),
        {
            "version": draft.version,
            "content_hash": draft.content_hash,
            "idempotency_key": "6f1c0a52-3d0b-4b7e-9a57-0d9a3c1e2f10",
            **extra,
        },
    )


def test_the_confirmation_page_shows_the_exact_request(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    content = client_alice.get(
        reverse("imports:draft_confirm", args=[draft.pk])
    ).content.decode()
    for expected in (
        "&quot;datastoreId&quot;: &quot;0123456789abcdef0123456789abcdef&quot;",
        "&quot;dataAccessRoleArn&quot;: &quot;arn:aws:iam::123456789012:role/HealthImagingImportRole&quot;",
        f"&quot;inputS3Uri&quot;: &quot;{INPUT}&quot;",
        f"&quot;outputS3Uri&quot;: &quot;{OUTPUT}&quot;",
        "&quot;dicomJsonMetadataImportConfiguration&quot;",
        f"&quot;seriesInstanceUID&quot;: &quot;{SERIES_A2}&quot;",
        f"&quot;metadataFilePath&quot;: &quot;{STUDY_FILE}&quot;",
    ):
        assert expected in content, expected
    assert "inputOwnerAccountId" not in content  # empty: not sent at all
    draft.refresh_from_db()
    assert draft.content_hash in content


def test_the_confirmation_page_summarises_studies_series_and_attributes(
    client_alice: Client, draft: ImportDraft
) -> None:
    empty = client_alice.get(reverse("imports:draft_confirm", args=[draft.pk]))
    assert "with no metadata override" in empty.content.decode()
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    content = client_alice.get(
        reverse("imports:draft_confirm", args=[draft.pk])
    ).content.decode()
    summary = content[
        content.index('id="summary"') : content.index("exactly as it will be sent")
    ]
    studies = {m.study_instance_uid for m in draft.mappings.all()}
    series = draft.mappings.exclude(series_instance_uid="").count()
    files = len({m.metadata_file_path for m in draft.mappings.all()})
    assert f"{len(studies)} stud" in summary
    assert f"({series} series by their own file)" in summary
    assert f"with {files} metadata file" in summary
    assert 'StudyDescription (0008,1030) <span class="muted">in 2 files' in summary
    assert 'SeriesDescription (0008,103E) <span class="muted">in 1 file<' in summary
    assert "patient-identifying" not in summary
    assert "with no metadata override" not in summary
    # A file that sets a PN value counts as patient-identifying, as in the preview.
    drafts.draft_assign(
        draft=draft, actor=None, version=draft.version + 1, targets=[(STUDY_B, "")],
        path=WRONG_VR_FILE,
    )  # fmt: skip
    flagged = client_alice.get(
        reverse("imports:draft_confirm", args=[draft.pk])
    ).content.decode()
    assert '<span class="badge warn">1 patient-identifying attribute</span>' in flagged


def test_the_confirm_button_is_disabled_while_an_error_remains(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    content = client_alice.get(
        reverse("imports:draft_confirm", args=[draft.pk])
    ).content.decode()
    assert 'disabled aria-disabled="true">Confirm the import' in content
    response = confirm(client_alice, draft, acknowledge_warnings="on")
    assert response.status_code == 400
    assert (
        "must be fixed before the import can be confirmed" in response.content.decode()
    )
    assert not AuditEvent.objects.filter(action="draft.confirmed").exists()


def test_warnings_must_be_acknowledged(
    client_alice: Client, draft: ImportDraft, django_capture_on_commit_callbacks: Any
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    response = confirm(client_alice, draft)
    assert response.status_code == 400
    assert "acknowledge the" in response.content.decode()
    assert not AuditEvent.objects.filter(action="draft.confirmed").exists()
    assert not ImportJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = confirm(client_alice, draft, acknowledge_warnings="on")
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("imports:job_detail", args=[job.pk])
    assert len(callbacks) == 1  # the submit task, enqueued once the job is stored
    event = AuditEvent.objects.get(action="draft.confirmed")
    draft.refresh_from_db()
    assert event.details["content_hash"] == draft.content_hash
    assert event.details["job"] == job.pk
    assert job.draft == draft
    assert job.request == drafts.draft_request(draft=draft)


def test_a_double_confirmation_makes_one_job(
    client_alice: Client, draft: ImportDraft, django_capture_on_commit_callbacks: Any
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        first = confirm(client_alice, draft, acknowledge_warnings="on")
        second = confirm(client_alice, draft, acknowledge_warnings="on")
    assert first["Location"] == second["Location"]
    assert ImportJob.objects.count() == 1
    assert AuditEvent.objects.filter(action="draft.confirmed").count() == 1


def test_back_then_confirm_again_answers_with_the_first_job(
    client_alice: Client, draft: ImportDraft, django_capture_on_commit_callbacks: Any
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        first = confirm(client_alice, draft, acknowledge_warnings="on")
        # Back: the page reloads with a fresh idempotency key; the box is ticked again.
        again = client_alice.post(
            reverse("imports:draft_confirm", args=[draft.pk]),
            {"version": draft.version, "content_hash": draft.content_hash,
             "idempotency_key": "0b6f58d2-6a5e-4f0e-8f43-1a1f0d2c9e77",
             "acknowledge_warnings": "on"},
            follow=True,
        )  # fmt: skip
    job = ImportJob.objects.get()
    assert first["Location"] == reverse("imports:job_detail", args=[job.pk])
    # The first confirmation's banner stays true after the job has ended: it names no state that changes.
    banner = again.content.decode()
    assert f"Confirmed as import job {job.pk}. Its status below follows it" in banner
    assert "on its way" not in banner
    assert again.redirect_chain[-1][0] == first["Location"]
    assert (
        f"This draft was already confirmed as import job {job.pk}"
        in again.content.decode()
    )
    assert AuditEvent.objects.filter(action="draft.confirmed").count() == 1


def test_two_tabs_confirming_at_once_make_one_job(
    client_alice: Client,
    alice: User,
    draft: ImportDraft,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tab B confirms while tab A is between its checks and its claim: A answers with B's job."""
    from imports.drafts import confirmation

    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    draft.refresh_from_db()
    validate = drafts.draft_validate
    tab_b: list[ImportJob] = []
    started: list[bool] = []

    def validate_while_tab_b_confirms(*, draft: ImportDraft) -> Any:
        if not started:
            started.append(True)
            tab_b.append(
                confirmation.draft_confirm(
                    draft=draft,
                    actor=alice,
                    version=draft.version,
                    content_hash=draft.content_hash,
                    acknowledged_warnings=True,
                    idempotency_key="tab-b",
                )  # fmt: skip
            )
        return validate(draft=draft)

    monkeypatch.setattr(
        "imports.drafts.confirmation.draft_validate", validate_while_tab_b_confirms
    )
    with django_capture_on_commit_callbacks(execute=False):
        tab_a = confirmation.draft_confirm(
            draft=draft, actor=alice, version=draft.version,
            content_hash=draft.content_hash, acknowledged_warnings=True,
            idempotency_key="tab-a",
        )  # fmt: skip
    assert tab_a == tab_b[0]
    assert ImportJob.objects.count() == 1


def test_a_confirmed_draft_is_frozen_and_marked_in_the_list(
    client_alice: Client, draft: ImportDraft, django_capture_on_commit_callbacks: Any
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        confirm(client_alice, draft, acknowledge_warnings="on")
    job = ImportJob.objects.get()
    draft.refresh_from_db()
    assert draft.confirmed_at is not None
    mappings_before = list(draft.mappings.values_list("pk", flat=True))
    refused = client_alice.post(
        reverse("imports:draft_unmap", args=[draft.pk]),
        {"version": draft.version, "mapping": mappings_before[0]},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422
    assert (
        f"This draft was confirmed as import job {job.pk} and can no longer change"
        in refused.content.decode()
    )
    assert list(draft.mappings.values_list("pk", flat=True)) == mappings_before
    composer = client_alice.get(reverse("imports:draft_detail", args=[draft.pk]))
    html = composer.content.decode()
    assert 'id="draft-frozen"' in html
    assert f'href="/jobs/{job.pk}/"' in html
    assert "unmap-form" not in html  # no editing controls
    page = client_alice.get(reverse("imports:draft_confirm", args=[draft.pk]))
    assert "Confirm the import</button>" not in page.content.decode()
    listed = client_alice.get(reverse("imports:draft_list")).content.decode()
    assert (
        f'<span class="badge ok">Confirmed</span> <a href="/jobs/{job.pk}/">' in listed
    )


def _second_draft_of_the_same_request(alice: User) -> ImportDraft:
    """A new draft over the same prefix with the same suggested mappings: the same request again."""
    second = drafts.draft_start(
        actor=alice,
        datastore=Datastore.objects.get(),
        input_s3_uri=INPUT,
        output_s3_uri=OUTPUT,
    )
    drafts.draft_accept_suggestions(draft=second, actor=None, version=1)
    second.refresh_from_db()
    return second


def test_the_same_request_again_is_refused_until_import_again_is_ticked(
    client_alice: Client,
    draft: ImportDraft,
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        confirm(client_alice, draft, acknowledge_warnings="on")
    first = ImportJob.objects.get()
    second = _second_draft_of_the_same_request(alice)
    # Known before pressing Confirm: the page names the earlier job and offers the box.
    page = client_alice.get(reverse("imports:draft_confirm", args=[second.pk]))
    html = page.content.decode()
    assert 'id="same-request"' in html
    assert f'<a href="/jobs/{first.pk}/">Import job {first.pk}</a>' in html
    with django_capture_on_commit_callbacks(execute=False):
        refused = client_alice.post(
            reverse("imports:draft_confirm", args=[second.pk]),
            {"version": second.version, "content_hash": second.content_hash,
             "idempotency_key": "3a9f6b0e-2c4d-4e8f-9a1b-5c6d7e8f9a0b",
             "acknowledge_warnings": "on"},
        )  # fmt: skip
    assert refused.status_code == 409
    body = refused.content.decode()
    assert f"Import job {first.pk} (queued, confirmed " in body
    assert (
        "made this same request: the same datastore, input prefix and mappings" in body
    )
    # Nothing is lost: the acknowledged warnings stay ticked, and the draft stays open.
    assert 'name="acknowledge_warnings" checked' in body
    second.refresh_from_db()
    assert second.confirmed_at is None
    assert ImportJob.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=False):
        accepted = client_alice.post(
            reverse("imports:draft_confirm", args=[second.pk]),
            {"version": second.version, "content_hash": second.content_hash,
             "idempotency_key": "3a9f6b0e-2c4d-4e8f-9a1b-5c6d7e8f9a0b",
             "acknowledge_warnings": "on", "import_again": "on"},
        )  # fmt: skip
    again = ImportJob.objects.exclude(pk=first.pk).get()
    assert accepted["Location"] == reverse("imports:job_detail", args=[again.pk])
    created = AuditEvent.objects.get(action="job.created", target_id=str(again.pk))
    assert created.details["import_again_of"] == first.pk
    assert f"importing again what job {first.pk} imported" in created.summary


def test_a_request_that_differs_or_a_job_never_submitted_is_no_duplicate(
    client_alice: Client,
    draft: ImportDraft,
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        confirm(client_alice, draft, acknowledge_warnings="on")
    first = ImportJob.objects.get()
    second = _second_draft_of_the_same_request(alice)
    # Other mappings: another import.
    drafts.draft_unmap(
        draft=second, actor=alice, version=second.version,
        mapping_ids=[second.mappings.order_by("pk").values_list("pk", flat=True)[0]],
    )  # fmt: skip
    second.refresh_from_db()
    html = client_alice.get(
        reverse("imports:draft_confirm", args=[second.pk])
    ).content.decode()
    assert 'id="same-request"' not in html
    # The same mappings as a job that never reached HealthImaging: it imported nothing.
    third = _second_draft_of_the_same_request(alice)
    assert (
        'id="same-request"'
        in client_alice.get(
            reverse("imports:draft_confirm", args=[third.pk])
        ).content.decode()
    )
    ImportJob.objects.filter(pk=first.pk).update(status=ImportJob.Status.SUBMIT_FAILED)
    assert (
        'id="same-request"'
        not in client_alice.get(
            reverse("imports:draft_confirm", args=[third.pk])
        ).content.decode()
    )
    # ...unless its outcome is unknown: AWS may have run it.
    ImportJob.objects.filter(pk=first.pk).update(outcome_unknown=True)
    assert (
        'id="same-request"'
        in client_alice.get(
            reverse("imports:draft_confirm", args=[third.pk])
        ).content.decode()
    )


def test_a_job_older_than_the_window_is_no_duplicate(
    client_alice: Client,
    draft: ImportDraft,
    alice: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    with django_capture_on_commit_callbacks(execute=False):
        confirm(client_alice, draft, acknowledge_warnings="on")
    second = _second_draft_of_the_same_request(alice)
    url = reverse("imports:draft_confirm", args=[second.pk])
    settings.JOBS_DUPLICATE_WINDOW_DAYS = 30
    ImportJob.objects.update(created_at=timezone.now() - timedelta(days=29))
    assert 'id="same-request"' in client_alice.get(url).content.decode()
    ImportJob.objects.update(created_at=timezone.now() - timedelta(days=31))
    assert 'id="same-request"' not in client_alice.get(url).content.decode()


def test_a_removed_mapping_can_be_put_back_with_one_press(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft,
        actor=None,
        version=1,
        targets=[(STUDY_A, SERIES_A2)],
        path=SERIES_FILE,
    )
    draft.refresh_from_db()
    mapping = draft.mappings.get()
    answer = client_alice.post(
        reverse("imports:draft_unmap", args=[draft.pk]),
        {"version": draft.version, "mapping": mapping.pk},
        headers={"HX-Request": "true"},
    )
    html = answer.content.decode()
    assert not draft.mappings.exists()
    assert 'id="undo"' in html
    assert f'name="target" value="{STUDY_A}|{SERIES_A2}"' in html
    assert f'name="path" value="{SERIES_FILE}"' in html
    draft.refresh_from_db()
    # The undo form is a plain assign of the same file to the same series, at the new version.
    undone = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {
            "version": draft.version,
            "target": f"{STUDY_A}|{SERIES_A2}",
            "path": SERIES_FILE,
        },
        headers={"HX-Request": "true"},
    )
    assert undone.status_code == 200
    assert list(
        draft.mappings.values_list("series_instance_uid", "metadata_file_path")
    ) == [(SERIES_A2, SERIES_FILE)]
    assert 'id="undo"' not in undone.content.decode()


def test_an_open_draft_is_not_frozen(client_alice: Client, draft: ImportDraft) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    html = client_alice.get(
        reverse("imports:draft_detail", args=[draft.pk])
    ).content.decode()
    assert 'id="draft-frozen"' not in html
    assert "unmap-form" in html
    confirm_page = client_alice.get(reverse("imports:draft_confirm", args=[draft.pk]))
    assert "Confirm the import</button>" in confirm_page.content.decode()


def test_confirming_re_checks_s3_and_refuses_a_changed_prefix(
    client_alice: Client, draft: ImportDraft, world: LocalAWSHandle
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    put_json(world, STUDY_FILE, {"00081030": {"vr": "LO", "Value": ["EDITED"]}})
    response = confirm(client_alice, draft, acknowledge_warnings="on")
    assert response.status_code == 400
    assert (
        "were added, removed or rewritten since its scan" in response.content.decode()
    )
    assert not AuditEvent.objects.filter(action="draft.confirmed").exists()


def test_confirming_an_older_version_is_refused(
    client_alice: Client, draft: ImportDraft
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    draft.refresh_from_db()
    stale = {"version": 1, "content_hash": draft.content_hash}
    response = client_alice.post(
        reverse("imports:draft_confirm", args=[draft.pk]),
        {
            **stale,
            "idempotency_key": "6f1c0a52-3d0b-4b7e-9a57-0d9a3c1e2f10",
            "acknowledge_warnings": "on",
        },
    )
    assert response.status_code == 409
    assert not AuditEvent.objects.filter(action="draft.confirmed").exists()


def test_the_drafts_page_lists_validity_and_a_delete_is_audited(
    client_alice: Client, draft: ImportDraft, django_assert_max_num_queries: Any
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    drafts.draft_validate(draft=draft)
    with django_assert_max_num_queries(8):
        content = client_alice.get(reverse("imports:draft_list")).content.decode()
    assert "1 error" in content
    # Asked first: the GET deletes nothing, says what goes, and posts back to itself.
    asked = client_alice.get(reverse("imports:draft_delete", args=[draft.pk]))
    assert "cannot be brought back" in asked.content.decode()
    assert "deleted with its 1 mapping, and" in asked.content.decode()
    assert ImportDraft.objects.filter(pk=draft.pk).exists()
    response = client_alice.post(reverse("imports:draft_delete", args=[draft.pk]))
    assert response.status_code == 302
    assert not ImportDraft.objects.exists()
    event = AuditEvent.objects.get(action="draft.deleted")
    assert event.details["mappings"][0]["metadataFilePath"] == WRONG_VR_FILE


def test_an_incomplete_scan_cannot_be_the_basis_of_an_import(
    draft: ImportDraft,
) -> None:
    assert draft.scan is not None
    Scan.objects.filter(pk=draft.scan.pk).update(status=Scan.Status.FAILED)
    draft.refresh_from_db()
    assert [p.code for p in drafts.draft_validate(draft=draft)] == [
        "index_not_completed"
    ]


def test_study_level_csv_rows_for_a_study_and_a_series_of_another_study(
    client_alice: Client, draft: ImportDraft
) -> None:
    body = HEADER + f"{STUDY_B},{SERIES_A1},{STUDY_FILE}\n"
    assert upload(client_alice, draft, body).status_code == 302
    problems = drafts.draft_validate(draft=draft)
    assert "series_not_in_study" in {p.code for p in problems}


def test_the_drafts_page_filters_by_state_owner_and_text(
    client_alice: Client, client_carol: Client, draft: ImportDraft
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    drafts.draft_validate(draft=draft)
    url = reverse("imports:draft_list")
    link = reverse("imports:draft_detail", args=[draft.pk])
    assert link in client_alice.get(url, {"state": "error"}).content.decode()
    assert link not in client_alice.get(url, {"state": "valid"}).content.decode()
    assert link in client_alice.get(url, {"mine": "on"}).content.decode()
    assert link not in client_carol.get(url, {"mine": "on"}).content.decode()
    assert link in client_alice.get(url, {"q": "draft-in"}).content.decode()
    assert link not in client_alice.get(url, {"q": "elsewhere"}).content.decode()
    refused = client_alice.get(url, {"state": "bogus"}).content.decode()
    assert link not in refused
    assert "Select a valid choice" in refused


def test_the_composer_pages_its_tree_and_rows_and_links_a_problem_to_its_page(
    client_alice: Client, draft: ImportDraft
) -> None:
    from imports.drafts.composer import ROWS_PER_PAGE, STUDIES_PER_PAGE

    scan = draft.scan
    assert scan is not None
    studies = STUDIES_PER_PAGE + 10
    for n in range(1, studies + 1):
        ScanStudy.objects.create(
            scan=scan, study_instance_uid=f"2.25.{n}", instance_count=1, bytes=1
        )
    DraftMapping.objects.bulk_create(
        DraftMapping(
            draft=draft, study_instance_uid=f"2.25.{n}", metadata_file_path=STUDY_FILE
        )
        for n in range(1, ROWS_PER_PAGE + 6)
    )
    url = reverse("imports:draft_detail", args=[draft.pk])
    first = client_alice.get(url).content.decode()
    assert first.count('class="study-row"') == STUDIES_PER_PAGE
    assert "Studies page 1 of 2" in first
    assert 'id="row-1"' in first
    assert f'id="row-{ROWS_PER_PAGE + 1}"' not in first
    # Row 101 is on the second page of mappings, and its problem links there.
    assert f'href="?rows_page=2&amp;studies_page=1#row-{ROWS_PER_PAGE + 1}"' in first
    second = client_alice.get(url, {"rows_page": 2, "studies_page": 2}).content.decode()
    assert f'id="row-{ROWS_PER_PAGE + 1}"' in second
    assert second.count('class="study-row"') == studies + 2 - STUDIES_PER_PAGE
    # A change made from page 2 comes back to page 2 (without JavaScript: in the redirect).
    row = draft.mappings.order_by("id").last()
    assert row is not None
    response = client_alice.post(
        reverse("imports:draft_unmap", args=[draft.pk]),
        {
            "version": draft.version,
            "mapping": row.pk,
            "rows_page": 2,
            "studies_page": 2,
        },
    )
    assert response["Location"].endswith("?studies_page=2&rows_page=2")


def test_the_drafts_page_lists_newest_first_across_pages(
    client_alice: Client, draft: ImportDraft
) -> None:
    import re

    for _ in range(30):
        ImportDraft.objects.create(
            datastore=draft.datastore,
            input_s3_uri=draft.input_s3_uri,
            output_s3_uri=draft.output_s3_uri,
        )
    url = reverse("imports:draft_list")
    pages = [client_alice.get(url, {"page": n}).content.decode() for n in (1, 2)]
    listed = [
        int(pk) for page in pages for pk in re.findall(r'href="/drafts/(\d+)/"', page)
    ]
    expected = list(
        ImportDraft.objects.order_by("-updated_at", "-id").values_list("pk", flat=True)
    )
    assert listed == expected
