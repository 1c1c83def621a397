"""Hostile input to every form and endpoint: each answer is a clear refusal or an escaped page, never a
500, a traceback, a partial write or a script that would run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from imports.drafts import services as drafts
from imports.models import (
    AuditEvent,
    Datastore,
    DraftMapping,
    ImportDraft,
    ObjectHeader,
    Scan,
)
from imports.roles import OPERATOR
from imports.validators import JOB_NAME_RE
from localaws.testing import dicom_bytes
from tests.builders import (
    INPUT,
    PREFIX,
    STUDY_A,
    STUDY_FILE,
    make_datastore,
    put_json,
    scan_prefix,
    seed_prefix,
)
from tests.conftest import _user

SCRIPT = "<script>alert(1)</script>"
HOSTILE = [
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%252e%252e/x.json",
    "x" * 1_000_000,
    "Ｄｏｅ^Ｊａｎｅ\u200b",
    "１.２.８４０.１",  # fullwidth digits: a UID look-alike
    "a\x00b",
    "\u202egnp.exe",
    "٣٤٥",
    "-1",
    "1e309",
    "9" * 40,
    "[]",
    "{}",
    "",
]
DEEP_FILE = "metadata/deep.json"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


def assert_safe(response: object, where: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status != 500, where
    assert status < 500, where
    if getattr(response, "streaming", False):
        return
    body = response.content.decode(errors="replace")  # type: ignore[attr-defined]
    assert "Traceback" not in body, where
    assert SCRIPT not in body, where
    assert "<img src=x onerror" not in body, where


@dataclass
class World:
    datastore: Datastore
    scan: Scan
    draft: ImportDraft
    alice: User
    bob: User

    def counts(self) -> tuple[int, ...]:
        self.draft.refresh_from_db()
        return (
            Scan.objects.count(),
            ImportDraft.objects.count(),
            DraftMapping.objects.count(),
            Datastore.objects.count(),
            self.draft.version,
            AuditEvent.objects.filter(
                action__in=[
                    AuditEvent.Action.DRAFT_CONFIRMED,
                    AuditEvent.Action.DRAFT_CHANGED,
                ]
            ).count(),
        )


@pytest.fixture
def world(localaws: object, db: None) -> World:
    seed_prefix(localaws)  # type: ignore[arg-type]
    # 200 levels of nesting: refused by the JSON checker with a reason, and the scan still completes.
    put_json(localaws, DEEP_FILE, '{"a":' * 200 + "1" + "}" * 200)  # type: ignore[arg-type]
    put_json(
        localaws,  # type: ignore[arg-type]
        f"metadata/{HOSTILE_NAME}.json",
        {"00081030": {"vr": "LO", "Value": [SCRIPT]}},
    )
    scan = scan_prefix()
    datastore = make_datastore()
    alice = _user("alice", OPERATOR)
    bob = _user("bob", "Viewer")
    draft = drafts.draft_start(
        actor=alice,
        datastore=datastore,
        input_s3_uri=datastore.input_s3_uri,
        output_s3_uri=datastore.output_s3_uri,
    )
    return World(datastore, scan, draft, alice, bob)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def draft_url(world: World, name: str) -> str:
    return reverse(f"imports:{name}", kwargs={"pk": world.draft.pk})


# --- Text fields: every form with every hostile value ------------------------------------------


def _form_posts(
    world: World, value: str
) -> Iterator[tuple[str, dict[str, object], str]]:
    """(url, data, the field that holds the value) for every form that takes text."""
    version = str(world.draft.version)
    target = f"{STUDY_A}|"
    yield reverse("imports:scan_start"), {"uri": value}, "uri"
    yield reverse("imports:scan_start"), {"datastore": value}, "datastore"
    for field in ("input_s3_uri", "output_s3_uri", "job_name"):
        yield (
            reverse("imports:draft_new"),
            {"datastore": world.datastore.pk, field: value},
            field,
        )
    yield reverse("imports:draft_new"), {"datastore": value}, "datastore"
    yield (
        draft_url(world, "draft_assign"),
        {"version": version, "target": target, "path": value},
        "path",
    )
    yield (
        draft_url(world, "draft_assign"),
        {"version": version, "target": value, "path": STUDY_FILE},
        "target",
    )
    yield (
        draft_url(world, "draft_assign"),
        {"version": value, "target": target, "path": STUDY_FILE},
        "version",
    )
    yield (
        draft_url(world, "draft_unmap"),
        {"version": version, "mapping": value},
        "mapping",
    )
    yield draft_url(world, "draft_unmap"), {"version": value, "mapping": "1"}, "version"
    yield draft_url(world, "draft_accept_suggestions"), {"version": value}, "version"
    yield draft_url(world, "draft_refresh_index"), {"version": value}, "version"
    for field in ("job_name", "output_s3_uri"):
        yield (
            draft_url(world, "draft_settings"),
            {
                "version": version,
                "job_name": "",
                "output_s3_uri": world.draft.output_s3_uri,
                field: value,
            },
            field,
        )
    for field in ("version", "content_hash", "idempotency_key"):
        yield (
            draft_url(world, "draft_confirm"),
            {
                "version": version,
                "content_hash": world.draft.content_hash,
                "idempotency_key": "00000000-0000-0000-0000-000000000000",
                field: value,
            },
            field,
        )
    yield draft_url(world, "draft_upload_csv"), {"version": value}, "version"


def _legitimate(field: str, value: str) -> bool:
    """Hostile-looking values that are valid where they were typed: a refusal there would be the bug."""
    if value == "" and field in ("input_s3_uri", "output_s3_uri"):
        return True  # empty means the datastore's default
    return field == "job_name" and (
        value == "" or JOB_NAME_RE.fullmatch(value) is not None
    )


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:20]) + f"·{len(v)}")
def test_every_form_refuses_hostile_text_and_saves_nothing(
    world: World, value: str
) -> None:
    client = signed_in(world.alice)
    for url, data, field in _form_posts(world, value):
        for headers in ({}, {"HX-Request": "true"}):
            before = world.counts()
            response = client.post(url, data, headers=headers)
            where = f"POST {url} {field}={value[:30]!r} htmx={bool(headers)}"
            assert_safe(response, where)
            if _legitimate(field, value):
                continue
            assert response.status_code in (400, 409, 422), (
                where,
                response.status_code,
            )
            assert world.counts() == before, where


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:20]) + f"·{len(v)}")
def test_every_page_with_a_query_renders_hostile_text_escaped(
    world: World, value: str
) -> None:
    client = signed_in(world.alice)
    pages = [
        (reverse("imports:browse"), {"uri": value}),
        (reverse("imports:browse"), {"datastore": value, "page": value}),
        (reverse("imports:scan_list"), {"q": value, "status": value, "page": value}),
        (reverse("imports:scan_detail", kwargs={"pk": world.scan.pk}), {"studies_page": value, "fragment": value}),
        (reverse("imports:draft_new"), {"scan": value}),
        (draft_url(world, "draft_preview"), {"series": value}),
        (reverse("imports:draft_list"), {"page": value}),
        (reverse("imports:audit_list"), {"action": value, "actor": value, "q": value, "since": value, "until": value, "page": value}),
        (reverse("imports:audit_export"), {"since": value, "q": value}),
    ]  # fmt: skip
    for url, query in pages:
        response = client.get(url, query)
        assert_safe(response, f"GET {url} {list(query)}")
        # ?scan= names a scan: a number that names none is a 404, like any missing object, and anything
        # else a 400 that says what a scan number is. An export with a filter that is not a date is
        # refused (400, with the reason), never run as "all". A NUL in any query is a 400 before the view.
        allowed = (
            (400,)
            if "\x00" in value
            else (200, 400, 404)
            if "scan" in query
            else (200, 400)
            if url == reverse("imports:audit_export")
            else (200,)
        )
        assert response.status_code in allowed, (
            url,
            query.keys(),
            response.status_code,
        )


def test_hostile_names_in_the_prefix_are_shown_escaped(world: World) -> None:
    client = signed_in(world.alice)
    for url in (
        reverse("imports:scan_detail", kwargs={"pk": world.scan.pk}) + "?json_page=1",
        draft_url(world, "draft_detail"),
        reverse("imports:browse") + f"?uri={INPUT}metadata/",
    ):
        response = client.get(url)
        assert_safe(response, url)
        assert "&lt;img src=x onerror=alert(1)&gt;" in response.content.decode(), url


def test_a_reveal_never_reflects_its_series_parameter(world: World) -> None:
    client = signed_in(world.alice)
    for value in HOSTILE[:6]:
        response = client.post(draft_url(world, "draft_reveal"), {"series": value})
        assert response.status_code == 302
        assert "script" not in response["Location"]
        assert "etc" not in response["Location"]


# --- Values no database column can hold ---------------------------------------------------------

# PostgreSQL text cannot hold U+0000, its JSON no lone surrogate and no number beyond a double; each
# such object is its own reason (tests/scanning/test_scan_hostile_values.py has the rules one by one).
UNSTORABLE_DICOM = {
    "nul-pn.dcm": {"PatientName": "Doe\x00Jane"},
    "nul-lo.dcm": {"StudyDescription": "CT\x00HEAD"},
    "nul-id.dcm": {"PatientID": "PAT\x001"},
}
UNSTORABLE_JSON = {
    "nul-value.json": '{"00081030": {"vr": "LO", "Value": ["CT\\u0000HEAD"]}}',
    "nul-key.json": '{"0008\\u00001030": {"vr": "LO", "Value": ["CT"]}}',
    "surrogate-value.json": '{"00081030": {"vr": "LO", "Value": ["CT \\ud800"]}}',
    "surrogate-key.json": '{"\\ud800": {"vr": "LO", "Value": ["CT"]}}',
    "fd-inf.json": '{"00189087": {"vr": "FD", "Value": [1e999]}}',
    "ds-inf.json": '{"00180050": {"vr": "DS", "Value": [-1e999]}}',
}
NUL_KEY = "odd/nul\x00key.dcm"


def test_values_no_column_can_hold_are_each_their_objects_reason_and_every_page_shows_them(
    localaws: object, db: None
) -> None:
    seed_prefix(localaws)  # type: ignore[arg-type]
    for name, attributes in UNSTORABLE_DICOM.items():
        body = dicom_bytes(study=STUDY_A, series=f"{STUDY_A}.9", **attributes)
        localaws.put(f"{INPUT}odd/{name}", body)  # type: ignore[attr-defined]
    for name, text in UNSTORABLE_JSON.items():
        put_json(localaws, f"odd/{name}", text)  # type: ignore[arg-type]
    localaws.put(f"{INPUT}{NUL_KEY}", dicom_bytes(study=STUDY_A, series=f"{STUDY_A}.9"))  # type: ignore[attr-defined]
    scan = scan_prefix()  # completed, or it fails here
    odd = {
        h.key.removeprefix(f"{PREFIX}odd/"): (h.status, h.error)
        for h in ObjectHeader.objects.of_scan(scan).filter(key__contains="/odd/")
    }
    assert len(odd) == len(UNSTORABLE_DICOM) + len(UNSTORABLE_JSON) + 1
    assert all(status in ("unreadable", "json_invalid") for status, _ in odd.values())
    assert all(error for _, error in odd.values()), odd
    assert "The key holds a NUL character" in odd["nul\ufffdkey.dcm"][1]
    # The study of the good files is indexed; no odd file joined it.
    assert not scan.studies.filter(series__series_instance_uid=f"{STUDY_A}.9").exists()

    alice = _user("alice", OPERATOR)
    datastore = make_datastore()
    draft = drafts.draft_start(
        actor=alice,
        datastore=datastore,
        input_s3_uri=datastore.input_s3_uri,
        output_s3_uri=datastore.output_s3_uri,
    )
    client = signed_in(alice)
    detail = reverse("imports:scan_detail", kwargs={"pk": scan.pk})
    pages = [
        (detail, {}),
        *((detail, {"fragment": f}) for f in ("studies", "problems", "json-files")),
        (detail, {"problems_page": "2"}),
        (reverse("imports:draft_detail", kwargs={"pk": draft.pk}), {}),
        (reverse("imports:browse"), {"uri": f"{INPUT}odd/"}),
        *(
            (
                reverse("imports:editor", kwargs={"pk": draft.pk}),
                {"path": f"odd/{name}"},
            )
            for name in UNSTORABLE_JSON
        ),
    ]
    for url, query in pages:
        response = client.get(url, query)
        assert_safe(response, f"GET {url} {query}")
        assert response.status_code == 200, (url, query)
        if "path" in query:
            assert "the file opens read-only" in response.content.decode(), query


# --- Oversize and deep ------------------------------------------------------------------------


def test_ten_thousand_mappings_in_a_csv_are_refused_whole(world: World) -> None:
    rows = "\n".join(f"{STUDY_A},,{STUDY_FILE}" for _ in range(10_000))
    upload = SimpleUploadedFile(
        "m.csv",
        f"studyInstanceUID,seriesInstanceUID,metadataFilePath\n{rows}\n".encode(),
    )
    before = world.counts()
    response = signed_in(world.alice).post(
        draft_url(world, "draft_upload_csv"),
        {"version": world.draft.version, "csv_file": upload},
    )
    assert_safe(response, "csv")
    assert response.status_code == 422
    assert "10,000 mappings" in response.content.decode()
    assert world.counts() == before


@pytest.mark.parametrize(
    "content",
    [
        b"studyInstanceUID,seriesInstanceUID,metadataFilePath\n" + b"1" * 3_000_000,
        b"studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        + f"{SCRIPT},{SCRIPT},{SCRIPT}\n".encode(),
        b"studyInstanceUID,seriesInstanceUID,metadataFilePath\n1.2\x00.3,,a.json\n",
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n".encode("utf-16"),
        b"studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        + f"{STUDY_A},,../../../etc/passwd\n".encode(),
        b'"unterminated',
        b"\xff\xfe\xfa",
    ],
    ids=["3MB", "script", "NUL", "utf16", "traversal", "quote", "binary"],
)
def test_a_hostile_csv_is_refused_with_a_reason(world: World, content: bytes) -> None:
    before = world.counts()
    response = signed_in(world.alice).post(
        draft_url(world, "draft_upload_csv"),
        {
            "version": world.draft.version,
            "csv_file": SimpleUploadedFile("m.csv", content),
        },
        headers={"HX-Request": "true"},
    )
    assert_safe(response, "csv")
    assert response.status_code == 422
    assert 'id="refusal"' in response.content.decode()
    assert world.counts() == before


def test_more_form_fields_than_django_reads_is_a_bad_request(world: World) -> None:
    data = {
        "version": world.draft.version,
        "path": STUDY_FILE,
        "target": [f"{i}|" for i in range(10_000)],
    }
    response = signed_in(world.alice).post(draft_url(world, "draft_assign"), data)
    assert response.status_code == 400


def test_a_deeply_nested_metadata_file_is_an_error_on_its_row_and_the_scan_completed(
    world: World,
) -> None:
    assert world.scan.status == Scan.Status.COMPLETED
    response = signed_in(world.alice).post(
        draft_url(world, "draft_assign"),
        {"version": world.draft.version, "target": f"{STUDY_A}|", "path": DEEP_FILE},
        headers={"HX-Request": "true"},
    )
    assert_safe(response, "deep")
    # Mapped, so that the composer can show its row, and refused by the checks with the checker's reason.
    problems = drafts.draft_validate(draft=ImportDraft.objects.get(pk=world.draft.pk))
    [problem] = [p for p in problems if p.code == "json_invalid"]
    assert problem.severity == "error"
    assert "nested too deeply" in problem.message
    assert "nested too deeply" in response.content.decode()


def test_deep_json_in_a_query_or_field_is_plain_text(world: World) -> None:
    deep = json.dumps(json.loads("[" * 500 + "]" * 500))
    response = signed_in(world.alice).get(reverse("imports:audit_list"), {"q": deep})
    assert response.status_code == 200


# --- The admin's datastore form ----------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:20]) + f"·{len(v)}")
def test_the_admin_datastore_form_refuses_hostile_values(
    client_carol: Client, world: World, value: str
) -> None:
    fields = {
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
    }
    before = Datastore.objects.count()
    for field in fields:
        if field == "enabled" or (field == "input_owner_account_id" and value == ""):
            continue  # a checkbox takes any value; the account ID is optional
        if field.startswith("max_") and value.isdigit() and len(value) < 6:
            continue  # digits of any script are a number to Django ("٣٤٥" is 345)
        response = client_carol.post(
            "/admin/imports/datastore/add/", {**fields, field: value}
        )
        assert_safe(response, field)
        if response.status_code == 302:
            # Only a harmless name is a valid datastore: then it was saved as typed, shown escaped.
            assert field == "name"
            Datastore.objects.filter(name=value).delete()
            continue
        assert response.status_code == 200, field
        assert "Please correct the error" in response.content.decode(), field
    assert Datastore.objects.count() == before


# --- Sessions, CSRF and other people's objects -------------------------------------------------

POST_ENDPOINTS = [
    "draft_assign", "draft_unmap", "draft_accept_suggestions", "draft_upload_csv", "draft_settings",
    "draft_refresh_index", "draft_delete", "draft_reveal", "draft_confirm",
]  # fmt: skip


def test_an_expired_session_on_htmx_redirects_to_the_login_page(world: World) -> None:
    client = Client()
    for name in POST_ENDPOINTS:
        response = client.post(draft_url(world, name), headers={"HX-Request": "true"})
        assert response.status_code == 200, name
        assert response["HX-Redirect"].startswith("/accounts/login/?next="), name
    response = client.get(reverse("imports:audit_list"), headers={"HX-Request": "true"})
    assert response["HX-Redirect"].startswith("/accounts/login/")


def test_every_post_without_a_csrf_token_is_refused(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    before = world.counts()
    urls = [draft_url(world, name) for name in POST_ENDPOINTS] + [
        reverse("imports:scan_start"),
        reverse("imports:draft_new"),
        reverse("imports:scan_cancel", kwargs={"pk": world.scan.pk}),
        reverse("imports:scan_reveal", kwargs={"pk": world.scan.pk}),
        reverse("imports:draft_from_scan", kwargs={"pk": world.scan.pk}),
        "/admin/imports/datastore/add/",
    ]
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.post(
                url, {"version": world.draft.version}, headers=headers
            )
            assert response.status_code == 403, url
    assert world.counts() == before


def test_a_viewer_cannot_change_an_operators_draft(world: World) -> None:
    client = signed_in(world.bob)
    before = world.counts()
    for name in POST_ENDPOINTS:
        response = client.post(draft_url(world, name), {"version": world.draft.version})
        assert response.status_code == 403, name
    assert world.counts() == before


def test_a_draft_that_does_not_exist_is_a_404_everywhere(world: World) -> None:
    client = signed_in(world.alice)
    missing = world.draft.pk + 1000
    for name in [
        *POST_ENDPOINTS,
        "draft_detail",
        "draft_preview",
        "draft_export",
        "draft_progress",
    ]:
        url = reverse(f"imports:{name}", kwargs={"pk": missing})
        method = (
            client.get
            if name
            in ("draft_detail", "draft_preview", "draft_export", "draft_progress")
            else client.post
        )
        assert method(url, {"version": 1}).status_code == 404, name


def test_drafts_are_shared_between_operators_and_the_audit_trail_names_who_changed_one(
    world: World,
) -> None:
    dave = _user("dave", OPERATOR)
    response = signed_in(dave).post(
        draft_url(world, "draft_assign"),
        {"version": world.draft.version, "target": f"{STUDY_A}|", "path": STUDY_FILE},
    )
    assert response.status_code == 302
    assert world.draft.mappings.count() == 1
    assert AuditEvent.objects.filter(
        actor=dave, target_id=str(world.draft.pk), target_type="imports.importdraft"
    ).exists()
