"""Composing an import: drafts, suggestions, bulk mapping, CSV, conflicts, confirmation (localaws over HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from imports.drafts import services as drafts
from imports.drafts import suggestions
from imports.models import AuditEvent, Datastore, DraftMapping, ImportDraft, Scan
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    MALFORMED_FILE,
    OUTPUT,
    SERIES_A1,
    SERIES_A2,
    SERIES_B1,
    SERIES_FILE,
    STUDY_A,
    STUDY_B,
    STUDY_FILE,
    WRONG_VR_FILE,
    make_datastore,
    make_job,
    put_json,
    scan_prefix,
    seed_prefix,
)


@pytest.fixture
def world(db: None, localaws: LocalAWSHandle) -> LocalAWSHandle:
    seed_prefix(localaws)
    return localaws


@pytest.fixture
def scanned(world: LocalAWSHandle) -> Scan:
    return scan_prefix()


@pytest.fixture
def store(db: None) -> Datastore:
    return make_datastore()


@pytest.fixture
def draft(scanned: Scan, store: Datastore, alice: User) -> ImportDraft:
    return drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )


def codes(problems: list[Any]) -> set[str]:
    return {p.code for p in problems}


# --- Starting a draft -----------------------------------------------------------------------


def test_it_composes_against_the_latest_scan_when_the_prefix_is_unchanged(
    scanned: Scan, store: Datastore, alice: User, world: LocalAWSHandle
) -> None:
    world.clear_calls()
    draft = drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    assert draft.scan == scanned
    assert world.calls("s3", "GetObject") == []
    assert AuditEvent.objects.filter(
        action="draft.created", target_id=str(draft.pk)
    ).exists()


def test_it_starts_a_scan_when_the_prefix_changed_since_the_last_one(
    scanned: Scan,
    store: Datastore,
    alice: User,
    world: LocalAWSHandle,
    django_capture_on_commit_callbacks: Any,
) -> None:
    put_json(world, "metadata/new.json", {})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        draft = drafts.draft_start(
            actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
        )
    assert draft.scan is not None
    assert draft.scan != scanned
    assert draft.scan.status == Scan.Status.QUEUED
    assert len(callbacks) == 1  # the scan task, enqueued once the draft is saved


def test_the_new_import_form_refuses_a_bad_job_name_and_saves_nothing(
    client_alice: Client, store: Datastore
) -> None:
    response = client_alice.post(
        reverse("imports:draft_new"),
        {"datastore": store.pk, "job_name": "<script>alert(1)</script>"},
    )
    assert response.status_code == 400
    content = response.content.decode()
    assert "A job name is 1-64 characters" in content
    assert "<script>alert(1)</script>" not in content
    assert not ImportDraft.objects.exists()


def test_the_new_import_form_refuses_an_output_uri_without_a_slash(
    client_alice: Client, store: Datastore
) -> None:
    response = client_alice.post(
        reverse("imports:draft_new"),
        {"datastore": store.pk, "output_s3_uri": "s3://draft-out/results"},
    )
    assert response.status_code == 400
    assert "must end with" in response.content.decode()
    assert not ImportDraft.objects.exists()


def test_new_import_from_a_scan_takes_its_datastore_in_one_click(
    client_alice: Client, scanned: Scan, store: Datastore
) -> None:
    Scan.objects.filter(pk=scanned.pk).update(datastore=store)
    response = client_alice.post(reverse("imports:draft_from_scan", args=[scanned.pk]))
    draft = ImportDraft.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("imports:draft_detail", args=[draft.pk])
    assert (draft.datastore, draft.scan, draft.input_s3_uri) == (store, scanned, INPUT)
    assert draft.output_s3_uri == store.output_s3_uri


def test_fix_on_the_scan_page_reuses_the_open_draft_of_that_prefix(
    client_alice: Client, alice: User, scanned: Scan, store: Datastore
) -> None:
    Scan.objects.filter(pk=scanned.pk).update(datastore=store)
    fix = reverse("imports:draft_from_scan", args=[scanned.pk])
    fields = {"fix_study": "1.2.3", "fix_attribute": "StudyDescription"}
    client_alice.post(fix, fields)
    first = ImportDraft.objects.get()
    second = client_alice.post(fix, {**fields, "fix_attribute": "BodyPartExamined"})
    assert ImportDraft.objects.get() == first
    assert second["Location"].startswith(reverse("imports:editor", args=[first.pk]))
    page = client_alice.get(second["Location"]).content.decode()
    assert f"Opened your draft {first.pk} of this prefix" in page
    # "New import from this scan" always starts a fresh draft.
    client_alice.post(fix)
    assert ImportDraft.objects.count() == 2


def test_fix_starts_a_new_draft_once_a_job_was_made_from_the_open_one(
    client_alice: Client, alice: User, scanned: Scan, store: Datastore
) -> None:
    Scan.objects.filter(pk=scanned.pk).update(datastore=store)
    fix = reverse("imports:draft_from_scan", args=[scanned.pk])
    fields = {"fix_study": "1.2.3", "fix_attribute": "StudyDescription"}
    client_alice.post(fix, fields)
    confirmed = ImportDraft.objects.get()
    make_job(store, actor=alice, draft=confirmed)
    client_alice.post(fix, fields)
    assert ImportDraft.objects.exclude(pk=confirmed.pk).count() == 1


def test_fix_never_reuses_someone_elses_draft(
    client_alice: Client, alice: User, scanned: Scan, store: Datastore
) -> None:
    Scan.objects.filter(pk=scanned.pk).update(datastore=store)
    someone = User.objects.create_user("someone")
    theirs = drafts.draft_start(
        actor=someone, datastore=store, input_s3_uri=INPUT,
        output_s3_uri=store.output_s3_uri,
    )  # fmt: skip
    client_alice.post(
        reverse("imports:draft_from_scan", args=[scanned.pk]),
        {"fix_study": "1.2.3", "fix_attribute": "StudyDescription"},
    )
    assert ImportDraft.objects.exclude(pk=theirs.pk).get().owner == alice


def test_the_file_quota_is_read_live_from_the_datastore_without_a_rescan(
    draft: ImportDraft, store: Datastore, scanned: Scan
) -> None:
    files = scanned.objects_listed
    Datastore.objects.filter(pk=store.pk).update(max_files_per_job=files - 1)
    draft.refresh_from_db()
    assert "quota_files" in codes(drafts.draft_validate(draft=draft))
    # The admin raises the quota: the same scan now passes.
    Datastore.objects.filter(pk=store.pk).update(max_files_per_job=files)
    draft.refresh_from_db()
    assert "quota_files" not in codes(drafts.draft_validate(draft=draft))
    scanned.refresh_from_db()
    assert scanned.max_files != files  # the figure recorded at scan time did not change


def test_a_viewer_cannot_start_a_draft(client_bob: Client, store: Datastore) -> None:
    response = client_bob.post(reverse("imports:draft_new"), {"datastore": store.pk})
    assert response.status_code == 403
    assert not ImportDraft.objects.exists()


# --- Suggestions and mapping ----------------------------------------------------------------


def test_it_suggests_files_whose_own_uids_name_a_study_or_series(
    draft: ImportDraft,
) -> None:
    proposed = {
        (s.study_instance_uid, s.series_instance_uid, s.path)
        for s in suggestions.draft_suggestions(draft=draft)
    }
    assert proposed == {
        (STUDY_A, "", STUDY_FILE),
        (STUDY_A, SERIES_A2, SERIES_FILE),
    }


def test_accept_all_suggestions_maps_them_in_one_click(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:draft_accept_suggestions", args=[draft.pk]),
        {"version": draft.version},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    rows = set(
        DraftMapping.objects.filter(draft=draft).values_list(
            "study_instance_uid", "series_instance_uid", "metadata_file_path"
        )
    )
    assert rows == {(STUDY_A, "", STUDY_FILE), (STUDY_A, SERIES_A2, SERIES_FILE)}
    draft.refresh_from_db()
    assert draft.version == 2
    assert suggestions.draft_suggestions(draft=draft) == []
    assert 'id="composer"' in response.content.decode()


def test_one_file_applies_to_several_ticked_series(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {
            "version": draft.version,
            "path": SERIES_FILE,
            "target": [f"{STUDY_A}|{SERIES_A1}", f"{STUDY_B}|{SERIES_B1}"],
        },
    )
    assert response.status_code == 302
    assert set(
        draft.mappings.values_list("series_instance_uid", "metadata_file_path")
    ) == {(SERIES_A1, SERIES_FILE), (SERIES_B1, SERIES_FILE)}
    event = AuditEvent.objects.filter(action="draft.changed").get()
    assert len(event.details["added"]) == 2


def test_removing_a_row_unmaps_it(client_alice: Client, draft: ImportDraft) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=draft.version)
    row = draft.mappings.get(series_instance_uid=SERIES_A2)
    response = client_alice.post(
        reverse("imports:draft_unmap", args=[draft.pk]),
        {"version": 2, "mapping": row.pk},
    )
    assert response.status_code == 302
    assert list(draft.mappings.values_list("series_instance_uid", flat=True)) == [""]


@pytest.mark.parametrize(
    "path",
    ["../x.json", "a/../../b.json", "./x.json", "%2e%2e/x.json", "/metadata/study-a.json",
     "metadata\\study-a.json", "metadata/\x00.json"],
)  # fmt: skip
def test_a_traversing_path_is_refused_and_nothing_is_saved(
    client_alice: Client, draft: ImportDraft, path: str
) -> None:
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {"version": draft.version, "path": path, "target": [f"{STUDY_A}|"]},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "metadataFilePath" in response.content.decode()
    assert not draft.mappings.exists()
    draft.refresh_from_db()
    assert draft.version == 1


def test_a_file_the_scan_did_not_find_is_refused(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {
            "version": draft.version,
            "path": "metadata/nope.json",
            "target": [f"{STUDY_A}|"],
        },
    )
    assert response.status_code == 422
    assert "no JSON file “metadata/nope.json” was found" in response.content.decode()
    assert not draft.mappings.exists()


def test_a_save_from_an_older_version_is_refused_and_the_newer_state_shown(
    client_alice: Client, draft: ImportDraft
) -> None:
    # Tab 1 accepts the suggestions; tab 2, still at version 1, maps a file to study B.
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {"version": 1, "path": WRONG_VR_FILE, "target": [f"{STUDY_B}|"]},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 409
    content = response.content.decode()
    assert "this draft changed since you opened it" in content.lower()
    assert 'name="version" value="2"' in content
    assert SERIES_FILE in content  # the newer state: tab 1's mappings
    assert not draft.mappings.filter(study_instance_uid=STUDY_B).exists()


# --- Validation through the draft -----------------------------------------------------------


def test_the_malformed_and_the_wrong_vr_files_are_refused_with_their_reasons(
    draft: ImportDraft,
) -> None:
    drafts.draft_assign(
        draft=draft, actor=None, version=1, targets=[(STUDY_A, "")], path=MALFORMED_FILE
    )
    drafts.draft_assign(
        draft=draft, actor=None, version=2, targets=[(STUDY_B, "")], path=WRONG_VR_FILE
    )
    problems = drafts.draft_validate(draft=draft)
    by_row = {(p.row, p.code) for p in problems if p.severity == "error"}
    assert (1, "json_invalid") in by_row
    assert (2, "json_invalid") in by_row
    messages = " ".join(p.message for p in problems if p.row == 2)
    assert "StudyDescription (0008,1030)" in messages
    draft.refresh_from_db()
    assert draft.error_count == 2


def test_a_file_rewritten_after_it_was_mapped_is_an_error(
    draft: ImportDraft, world: LocalAWSHandle, alice: User
) -> None:
    drafts.draft_accept_suggestions(draft=draft, actor=None, version=1)
    put_json(world, STUDY_FILE, {"00081030": {"vr": "LO", "Value": ["CHANGED"]}})
    refreshed = drafts.draft_refresh_index(draft=draft, actor=alice, version=2)
    assert refreshed.scan is not None
    assert refreshed.scan != draft.scan
    # The new scan runs inline here (the task would do the same).
    from imports.scanning import run

    run.scan_run(scan_id=refreshed.scan.pk)
    refreshed.refresh_from_db()
    assert "file_changed" in codes(drafts.draft_validate(draft=refreshed))


# --- Bad objects under the prefix -----------------------------------------------------------


def test_hostile_json_files_under_the_prefix_are_each_refused_with_a_reason(
    world: LocalAWSHandle, store: Datastore, alice: User, client_alice: Client
) -> None:
    files: dict[str, tuple[bytes | str, str]] = {
        "metadata/deep.json": ("[" * 1000 + "]" * 1000, "nested too deeply"),
        "metadata/deep-object.json": (
            '{"a":' * 1000 + "1" + "}" * 1000,
            "nested too deeply",
        ),
        "metadata/huge.json": (
            b'{"00081030": {"vr": "LO", "Value": ["'
            + b"x" * (20 * 1024 * 1024)
            + b'"]}}',
            "metadata files are read up to 1,048,576 bytes",
        ),
        "metadata/empty.json": (b"", "0-byte object"),
        "metadata/array.json": (
            "[{}]",
            "expected one DICOM JSON object, got an array of 1",
        ),
        "metadata/zz.json": (
            '{"00081030": {"vr": "ZZ", "Value": ["x"]}}',
            "is not a DICOM VR",
        ),
        "metadata/keyword.json": (
            '{"StudyDescription": {"vr": "LO", "Value": ["x"]}}',
            "keyword keys are not allowed; use the tag '00081030'",
        ),
    }
    for path, (body, _) in files.items():
        put_json(world, path, body)
    # One bad object never stops the scan: each gets its own reason.
    scan = scan_prefix()
    draft = drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )
    for version, (path, (_, reason)) in enumerate(files.items(), start=1):
        drafts.draft_assign(
            draft=draft, actor=None, version=version, targets=[(STUDY_A, "")], path=path
        )
        problems = drafts.draft_validate(draft=draft)
        messages = [
            p.message for p in problems if p.code in ("json_invalid", "file_too_large")
        ]
        assert len(messages) == 1, (path, [p.code for p in problems])
        assert reason in messages[0], (path, messages[0])
    assert scan.status == Scan.Status.COMPLETED
    response = client_alice.get(reverse("imports:draft_detail", args=[draft.pk]))
    assert response.status_code == 200
    assert "keyword keys are not allowed" in response.content.decode()


def test_json_files_read_before_documents_were_kept_are_read_again(db: None) -> None:
    import importlib

    from django.apps import apps

    from imports.models import ObjectHeader

    migration = importlib.import_module("imports.migrations.0012_reread_json_metadata")
    common = {"bucket": "b", "size": 2, "kind": ObjectHeader.Kind.JSON}
    old = ObjectHeader.objects.create(
        key="old.json", etag="1", status=ObjectHeader.Status.JSON_VALID, **common
    )
    new = ObjectHeader.objects.create(
        key="new.json", etag="1", status=ObjectHeader.Status.JSON_VALID,
        json_document={}, **common,
    )  # fmt: skip
    migration.forward(apps, None)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.reusable, new.reusable) == (False, True)


def test_an_unlistable_prefix_starts_a_scan_that_says_why_instead_of_failing(
    scanned: Scan,
    store: Datastore,
    alice: User,
    world: LocalAWSHandle,
    django_capture_on_commit_callbacks: Any,
) -> None:
    world.add_fault(service="s3", operation="ListObjectsV2", error="AccessDenied")
    with django_capture_on_commit_callbacks(execute=False):
        draft = drafts.draft_start(
            actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
        )
    assert draft.scan is not None
    assert draft.scan != scanned
    assert draft.scan.status == Scan.Status.QUEUED
