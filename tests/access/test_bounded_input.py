"""Every value from a request goes through a form field that bounds and cleans it (issue 23, items 7-10 and 16).

Each case is an input a hostile-input probe answered with a 500 or let through to the database: the answer is now
a 4xx that names the field and says what is allowed, and nothing was saved.
"""

from __future__ import annotations

import html

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory
from django.urls import reverse

from imports.drafts import services as drafts
from imports.forms import MAX_ROW_ID, BoundedIntegerField, validate_s3_prefix
from imports.models import AuditEvent, Datastore, DraftMapping, ImportDraft, Scan
from imports.views.common import page_number
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    STUDY_A,
    STUDY_FILE,
    make_datastore,
    scan_prefix,
    seed_prefix,
)

HX = {"HX-Request": "true"}
SUPERSCRIPT_TWO = "²"  # str.isdigit() says yes, int() says no
FIVE_THOUSAND_DIGITS = "9" * 5_000  # int() refuses more than 4,300 digits


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


def counts(draft: ImportDraft) -> tuple[int, ...]:
    draft.refresh_from_db()
    return (
        Scan.objects.count(),
        ImportDraft.objects.count(),
        DraftMapping.objects.count(),
        draft.version,
        AuditEvent.objects.filter(action=AuditEvent.Action.DRAFT_CHANGED).count(),
    )


def text(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


# --- The shared field ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [SUPERSCRIPT_TWO, "1.0", "1e3", "٣٤٥", "-1", "0", "+1", FIVE_THOUSAND_DIGITS, str(MAX_ROW_ID + 1)],
)  # fmt: skip
def test_the_bounded_field_refuses_what_is_not_a_row_id_and_says_what_is_allowed(
    value: str,
) -> None:
    field = BoundedIntegerField(label="Mapping")
    with pytest.raises(ValidationError) as refused:
        field.clean(value)
    [message] = refused.value.messages
    assert "whole number from 1 to 9,223,372,036,854,775,807" in message
    assert "digits 0-9" in message


@pytest.mark.parametrize(
    ("value", "number"),
    [("1", 1), ("42", 42), (str(MAX_ROW_ID), MAX_ROW_ID), (" 7 ", 7)],
)
def test_the_bounded_field_takes_a_row_id_in_range(value: str, number: int) -> None:
    assert BoundedIntegerField().clean(value) == number


def test_the_bounded_field_keeps_its_own_bounds() -> None:
    field = BoundedIntegerField(max_value=500)
    assert field.clean("500") == 500
    with pytest.raises(ValidationError, match="from 1 to 500"):
        field.clean("501")


# --- Item 8: ?scan=, remove and check_row ----------------------------------------------------------


@pytest.mark.parametrize("scan", ["%C2%B2", "1.0", "9" * 5_000, "-1", "abc"])
def test_a_new_import_from_a_bad_scan_number_is_a_400_that_names_the_field(
    client_alice: Client, draft: ImportDraft, scan: str
) -> None:
    response = client_alice.get(reverse("imports:draft_new") + f"?scan={scan}")
    assert response.status_code == 400
    assert "Scan: enter a whole number" in text(response)


def test_a_new_import_from_a_scan_still_opens_with_the_scans_prefix(
    client_alice: Client, draft: ImportDraft
) -> None:
    scan = Scan.objects.get()
    response = client_alice.get(reverse("imports:draft_new"), {"scan": scan.pk})
    assert response.status_code == 200
    assert f'value="{scan.uri}"' in response.content.decode()


def editor_data(draft: ImportDraft, **fields: str) -> dict[str, object]:
    draft.refresh_from_db()
    return {
        "version": str(draft.version),
        "study": STUDY_A,
        "series": "",
        "path": "metadata/page.json",
        "loaded_etag": "",
        "action": "save",
        "row": ["1", "2"],
        "rows-1-tag": "00081030",
        "rows-1-vr": "LO",
        "rows-1-value": "ONE",
        "rows-2-tag": "0008103E",
        "rows-2-vr": "LO",
        "rows-2-value": "TWO",
        **fields,
    }


@pytest.mark.parametrize("remove", [SUPERSCRIPT_TWO, FIVE_THOUSAND_DIGITS, "1.0", "0"])
@pytest.mark.parametrize("headers", [{}, HX], ids=["plain", "htmx"])
def test_removing_a_row_that_is_not_a_row_number_is_refused_with_the_rows_kept(
    client_alice: Client, draft: ImportDraft, remove: str, headers: dict[str, str]
) -> None:
    before = counts(draft)
    response = client_alice.post(
        reverse("imports:editor", args=[draft.pk]),
        editor_data(draft, remove=remove),
        headers=headers,
    )
    assert response.status_code == 422
    body = text(response)
    assert "Remove: enter a whole number from 1 to" in body
    assert 'name="rows-2-value" value="TWO"' in body  # nothing removed
    assert counts(draft) == before


def test_removing_a_row_by_its_number_still_removes_it(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:editor", args=[draft.pk]), editor_data(draft, remove="1")
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="TWO"' in body
    assert 'value="ONE"' not in body


@pytest.mark.parametrize("row", [SUPERSCRIPT_TWO, FIVE_THOUSAND_DIGITS, "1.0", "3"])
def test_checking_a_row_that_is_not_one_of_the_forms_rows_is_a_400_that_names_the_field(
    client_alice: Client, draft: ImportDraft, row: str
) -> None:
    response = client_alice.post(
        reverse("imports:editor_row", args=[draft.pk]),
        editor_data(draft, check_row=row),
        headers=HX,
    )
    assert response.status_code == 400
    assert "Row to check: enter a whole number from 1 to 2" in text(response)


def test_checking_a_row_of_the_form_still_answers_its_verdict(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:editor_row", args=[draft.pk]),
        editor_data(draft, check_row="2"),
        headers=HX,
    )
    assert response.status_code == 200


def test_a_row_number_that_is_not_ascii_digits_is_not_a_row(
    client_alice: Client, draft: ImportDraft
) -> None:
    data = editor_data(draft, action="check")
    data["row"] = ["1", SUPERSCRIPT_TWO, FIVE_THOUSAND_DIGITS]
    data[f"rows-{SUPERSCRIPT_TWO}-value"] = "SUPERSCRIPT"
    response = client_alice.post(reverse("imports:editor", args=[draft.pk]), data)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="ONE"' in body
    assert "SUPERSCRIPT" not in body


# --- Item 9: version=1.0 ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["draft_accept_suggestions", "draft_refresh_index"])
@pytest.mark.parametrize("version", ["1.0", SUPERSCRIPT_TWO, FIVE_THOUSAND_DIGITS])
@pytest.mark.parametrize("headers", [{}, HX], ids=["plain", "htmx"])
def test_a_draft_version_that_is_not_a_whole_number_is_refused_and_nothing_saved(
    client_alice: Client,
    draft: ImportDraft,
    name: str,
    version: str,
    headers: dict[str, str],
) -> None:
    before = counts(draft)
    response = client_alice.post(
        reverse(f"imports:{name}", args=[draft.pk]),
        {"version": version},
        headers=headers,
    )
    assert response.status_code == 422
    assert "Draft version: enter a whole number from 1 to" in text(response)
    assert counts(draft) == before


@pytest.mark.parametrize("name", ["draft_accept_suggestions", "draft_refresh_index"])
def test_the_draft_version_the_page_showed_is_still_taken(
    client_alice: Client, draft: ImportDraft, name: str
) -> None:
    response = client_alice.post(
        reverse(f"imports:{name}", args=[draft.pk]), {"version": draft.version}
    )
    assert response.status_code == 302


# --- Item 7: a sign-in name longer than the lockout table holds -----------------------------------


def test_signing_in_with_a_user_name_over_255_characters_is_refused_without_a_500(
    client: Client, alice: User
) -> None:
    response = client.post(
        "/accounts/login/", {"username": "a" * 300, "password": "wrong"}
    )
    assert response.status_code == 200
    assert "Username: at most 150 characters (this one has 300)" in text(response)
    assert not AccessAttempt.objects.exists()


def test_signing_in_with_a_wrong_password_is_still_counted_by_the_lockout(
    client: Client, alice: User
) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "x"})
    assert response.status_code == 200
    assert AccessAttempt.objects.filter(username="alice").exists()


# --- Item 10: a NUL in a query value ----------------------------------------------------------------


def test_a_nul_in_the_editors_path_is_refused_before_the_database(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.get(
        reverse("imports:editor", args=[draft.pk]) + "?path=x.json%00.txt"
    )
    assert response.status_code == 400
    assert "The query parameter “path” holds a NUL character" in text(response)


def test_an_editor_path_longer_than_a_metadata_file_path_is_refused_by_its_field(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.get(
        reverse("imports:editor", args=[draft.pk]), {"path": "a" * 1025}
    )
    assert response.status_code == 400
    assert "File: Ensure this value has at most 1024 characters" in text(response)


def test_a_nul_in_an_admin_filter_is_a_400(client_carol: Client) -> None:
    response = client_carol.get("/admin/imports/datastore/?region__exact=%00")
    assert response.status_code == 400
    assert "The query parameter “region__exact” holds a NUL character" in text(response)


def test_a_nul_in_a_posted_value_is_refused_by_its_field_and_nothing_saved(
    client_alice: Client, draft: ImportDraft
) -> None:
    before = counts(draft)
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {"version": draft.version, "target": f"{STUDY_A}|", "path": "a\x00.json"},
    )
    assert response.status_code == 422
    assert "Metadata file: Null characters are not allowed." in text(response)
    assert counts(draft) == before


def test_the_admin_filter_without_a_nul_still_filters(client_carol: Client) -> None:
    response = client_carol.get("/admin/imports/datastore/?region__exact=us-east-1")
    assert response.status_code == 200


# --- Item 16: prefixes that climb out ---------------------------------------------------------------

TRAVERSALS = [
    "s3://in-bucket/a/../b/",
    "s3://in-bucket/../../etc/",
    "s3://in-bucket/a/%2e%2e/b/",
    "s3://in-bucket/a/%2E%2E/",
    "s3://in-bucket/a/%252e%252e/",
    "s3://in-bucket/a\\..\\b/",
    "s3://in-bucket/a/\uff0e\uff0e/b/",
    "s3://in-bucket/a/./b/",
    "s3://in-bucket/a/%00/",
]


@pytest.mark.parametrize("uri", TRAVERSALS)
def test_a_prefix_that_could_climb_out_is_refused_with_what_is_allowed(
    uri: str,
) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_s3_prefix(uri)
    [message] = refused.value.messages
    assert "The prefix" in message


@pytest.mark.parametrize(
    "uri",
    [
        "s3://in-bucket/",
        "s3://in-bucket",
        "s3://in-bucket/a.b/c..d/",
        "s3://in-bucket/Ünïcode/x/",
    ],
)
def test_a_plain_prefix_is_taken(uri: str) -> None:
    validate_s3_prefix(uri)


@pytest.mark.parametrize("uri", TRAVERSALS)
def test_the_scan_and_draft_inputs_refuse_a_climbing_prefix_and_save_nothing(
    client_alice: Client, draft: ImportDraft, uri: str
) -> None:
    before = counts(draft)
    scan = client_alice.post(reverse("imports:scan_start"), {"uri": uri})
    assert scan.status_code == 400
    assert "The prefix" in text(scan)
    new = client_alice.post(
        reverse("imports:draft_new"),
        {"datastore": draft.datastore.pk, "input_s3_uri": uri},
    )
    assert new.status_code == 400
    assert "The prefix" in text(new)
    assert counts(draft) == before


def test_mapping_a_file_still_works_through_the_bounded_version(
    client_alice: Client, draft: ImportDraft
) -> None:
    response = client_alice.post(
        reverse("imports:draft_assign", args=[draft.pk]),
        {"version": draft.version, "target": f"{STUDY_A}|", "path": STUDY_FILE},
    )
    assert response.status_code == 302
    assert draft.mappings.count() == 1


DATASTORE_FIELDS = {
    "name": "New",
    "enabled": "on",
    "region": "us-east-1",
    "datastore_id": "0123456789abcdef0123456789abcdee",
    "role_arn": "arn:aws:iam::123456789012:role/R",
    "input_s3_uri": "s3://in-bucket/x/",
    "output_s3_uri": "s3://out-bucket/x/",
    "input_owner_account_id": "",
    "max_files_per_job": "5000",
    "max_bytes_per_job": "10000",
    "max_concurrent_jobs": "1",
    "start_jobs_per_second": "1",
}


@pytest.mark.parametrize("field", ["input_s3_uri", "output_s3_uri"])
def test_the_admin_refuses_a_datastore_uri_whose_prefix_climbs_out(
    client_carol: Client, field: str
) -> None:
    response = client_carol.post(
        "/admin/imports/datastore/add/",
        {**DATASTORE_FIELDS, field: "s3://in-bucket/a/%2e%2e/"},
    )
    assert response.status_code == 200
    assert "The prefix after the bucket is refused" in text(response)
    assert not Datastore.objects.filter(name="New").exists()


def test_the_admin_still_saves_a_datastore_with_plain_prefixes(
    client_carol: Client,
) -> None:
    response = client_carol.post("/admin/imports/datastore/add/", DATASTORE_FIELDS)
    assert response.status_code == 302
    assert Datastore.objects.filter(name="New").exists()


# --- Page numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "page"),
    [("page=3", 3), ("page=%C2%B2", 1), ("page=1.0", 1), (f"page={FIVE_THOUSAND_DIGITS}", 1), ("page=-2", 1), ("", 1), ("page=1000001", 1)],
)  # fmt: skip
def test_a_page_number_goes_through_the_bounded_field_and_a_bad_one_is_the_first_page(
    rf: RequestFactory, query: str, page: int
) -> None:
    assert page_number(rf.get("/?" + query)) == page


def test_a_list_opened_on_a_page_that_is_not_a_number_shows_the_first_page(
    client_alice: Client, draft: ImportDraft
) -> None:
    for url in (
        reverse("imports:draft_list"),
        reverse("imports:scan_list"),
        reverse("imports:audit_list"),
    ):
        response = client_alice.get(url, {"page": SUPERSCRIPT_TWO})
        assert response.status_code == 200, url
