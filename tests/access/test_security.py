"""The security pass: headers, cookies, the idle timeout, login throttling, ?next=, CSRF, CSV cells,
Cache-Control, S3 bucket names and the admin's date filters."""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from config.middleware import LAST_ACTIVITY_SESSION_KEY
from imports.mappings.csvfile import csv_unguard
from imports.models import AuditEvent, Datastore, Scan
from imports.validators import validate_s3_uri
from imports.views.common import csv_cell
from tests.builders import INPUT, scan_prefix, seed_prefix
from tests.conftest import PASSWORD

# --- Headers and cookies --------------------------------------------------------------------


def test_the_content_security_policy_allows_no_inline_code(client_bob: Client) -> None:
    policy = client_bob.get("/")["Content-Security-Policy"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy


def test_no_page_may_be_framed(client_bob: Client) -> None:
    response = client_bob.get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_the_session_and_csrf_cookies_are_httponly_and_same_site(
    client: Client, alice: User
) -> None:
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    csrf = client.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["httponly"] is True
    assert csrf["samesite"] == "Lax"


# --- Session idle timeout -------------------------------------------------------------------


def _idle(client: Client, seconds: int) -> None:
    session = client.session
    session[LAST_ACTIVITY_SESSION_KEY] = int(time.time()) - seconds
    session.save()


def test_a_session_idle_for_longer_than_the_timeout_is_signed_out(
    client_bob: Client,
) -> None:
    assert client_bob.get("/").status_code == 200
    _idle(client_bob, settings.SESSION_IDLE_TIMEOUT + 5)
    response = client_bob.get("/scans/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/scans/"
    assert client_bob.get("/").status_code == 302
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.SIGNED_OUT, actor_username="bob"
    ).exists()


def test_a_session_used_within_the_timeout_stays_signed_in(client_bob: Client) -> None:
    _idle(client_bob, settings.SESSION_IDLE_TIMEOUT - 60)
    assert client_bob.get("/").status_code == 200
    # The request counted as activity: the clock starts again.
    assert (
        int(time.time()) - client_bob.session[LAST_ACTIVITY_SESSION_KEY]
        < settings.SESSION_IDLE_TIMEOUT - 60
    )


def test_an_idle_htmx_request_is_sent_to_the_login_page_as_a_whole_page(
    client_bob: Client,
) -> None:
    _idle(client_bob, settings.SESSION_IDLE_TIMEOUT + 5)
    response = client_bob.get(
        "/scans/",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/scans/"},
    )
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")


def test_polling_a_progress_bar_does_not_keep_a_session_alive(
    client_bob: Client, datastore: Datastore
) -> None:
    scan = Scan.objects.create(bucket="dicom-input", prefix="incoming/")
    idle_since = settings.SESSION_IDLE_TIMEOUT - 120
    _idle(client_bob, idle_since)
    client_bob.get(
        reverse("imports:scan_progress", kwargs={"pk": scan.pk}),
        headers={"HX-Request": "true"},
    )
    assert (
        int(time.time()) - client_bob.session[LAST_ACTIVITY_SESSION_KEY] >= idle_since
    )


# --- Sign-in throttling (django-axes) -------------------------------------------------------


def _sign_in(client: Client, password: str, address: str = "10.0.0.1") -> int:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": password},
        REMOTE_ADDR=address,
    )
    return response.status_code


def test_repeated_wrong_passwords_lock_the_user_name_out_from_that_address(
    client: Client, alice: User
) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    assert [_sign_in(client, "wrong") for _ in range(limit - 1)] == [200] * (limit - 1)
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "wrong"},
        REMOTE_ADDR="10.0.0.1",
    )
    assert response.status_code == 429
    assert "Sign-in locked" in response.content.decode()
    # Locked: even the right password is refused now, and no session is opened.
    assert _sign_in(client, PASSWORD) == 429
    assert "_auth_user_id" not in client.session
    # Another address is not locked out (a stranger cannot lock a colleague out).
    assert _sign_in(Client(), PASSWORD, address="10.0.0.2") == 302


def test_a_few_wrong_passwords_then_the_right_one_sign_in(
    client: Client, alice: User
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "wrong")
    assert _sign_in(client, PASSWORD) == 302
    # A success resets the count: as many failures again are allowed.
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(Client(), "wrong")
    assert _sign_in(Client(), PASSWORD) == 302


def test_a_locked_out_attempt_writes_no_more_failed_sign_in_events(
    client: Client, alice: User
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT + 10):
        _sign_in(client, "wrong")
    failed = AuditEvent.objects.filter(action=AuditEvent.Action.SIGN_IN_FAILED)
    assert failed.count() == settings.AXES_FAILURE_LIMIT


# --- ?next= ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example/",
        "http://testserver.evil.example/",
        "/\\evil.example/",
        "javascript:alert(1)",
    ],
)
def test_signing_in_never_redirects_off_site(
    client: Client, alice: User, next_url: str
) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD, "next": next_url},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_signing_in_follows_a_local_next(client: Client, alice: User) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD, "next": "/scans/?status=running"},
    )
    assert response["Location"] == "/scans/?status=running"


# --- CSRF -----------------------------------------------------------------------------------


def test_a_post_without_its_csrf_token_is_refused_htmx_or_not(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(
            reverse("imports:draft_new"), {"datastore": "1"}, headers=headers
        )
        assert response.status_code == 403
        assert b"CSRF" in response.content


def test_an_htmx_post_with_the_token_from_the_page_passes_csrf(
    alice: User, datastore: Datastore
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get(reverse("imports:draft_new")).content.decode()
    token = page.split('"x-csrftoken": "', 1)[1].split('"', 1)[0]
    response = client.post(
        reverse("imports:draft_new"),
        {"datastore": str(datastore.pk), "input_s3_uri": "s3://../"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    # Past CSRF, into the form's own validation.
    assert response.status_code == 400
    assert "not an S3 URI" in response.content.decode()


def _csv_rows(response: object) -> list[list[str]]:
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    return list(csv.reader(io.StringIO(body.decode())))


# --- CSV cells ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("'=already", "''=already"),
        ("incoming/a=b.dcm", "incoming/a=b.dcm"),
        ("'quoted", "'quoted"),
        (-5, -5),
        ("", ""),
    ],
)
def test_a_csv_cell_is_never_a_formula_and_the_guard_can_be_undone(
    value: object, cell: object
) -> None:
    assert csv_cell(value) == cell
    if isinstance(value, str):
        assert csv_unguard(csv_cell(value)) == value


def test_the_scan_export_neutralises_a_hostile_s3_key(
    localaws: object, client_bob: Client
) -> None:
    seed_prefix(localaws)  # type: ignore[arg-type]
    hostile = ['=HYPERLINK("http://evil.example/","x").dcm', "@SUM(1+1).dcm", "+1.json"]
    for key in hostile:
        localaws.put(f"{INPUT}{key}", b"not dicom")  # type: ignore[attr-defined]
    scan = scan_prefix()
    response = client_bob.get(reverse("imports:scan_export", kwargs={"pk": scan.pk}))
    rows = _csv_rows(response)
    keys = [row[0] for row in rows[1:]]
    for key in hostile:
        assert (
            "'incoming/" + key not in keys
        )  # the key starts with the prefix, not a formula
        assert f"incoming/{key}" in keys
    # A cell that does start with a formula character is quoted: the error column of a non-DICOM file.
    assert not any(
        cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row
    )


def test_the_audit_export_quotes_a_user_name_that_looks_like_a_formula(
    client_carol: Client,
) -> None:
    user = User.objects.create_user("-2+3", password=PASSWORD)
    AuditEvent.objects.create(
        actor=user,
        actor_username="-2+3",
        action=AuditEvent.Action.SIGNED_IN,
        summary="x",
    )
    response = client_carol.get(reverse("imports:audit_export"))
    rows = _csv_rows(response)
    column = rows[0].index("actor_username")
    assert [row[column] for row in rows[1:] if row[column].endswith("-2+3")] == [
        "'-2+3"
    ]


# --- Cache-Control --------------------------------------------------------------------------


def test_pages_and_exports_that_can_carry_patient_data_are_not_stored(
    localaws: object, client_alice: Client
) -> None:
    seed_prefix(localaws)  # type: ignore[arg-type]
    scan = scan_prefix()
    for url in (
        reverse("imports:scan_detail", kwargs={"pk": scan.pk}),
        reverse("imports:scan_export", kwargs={"pk": scan.pk}),
        reverse("imports:audit_export"),
        reverse("imports:dashboard"),
    ):
        response = client_alice.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"], url
        assert "private" in response["Cache-Control"], url


def test_static_files_stay_cacheable(client: Client) -> None:
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


# --- S3 bucket names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3://demo..dicom/", "two dots in a row"),
        ("s3://127.0.0.1/", "form of an IP address"),
        ("s3://169.254.169.254/latest/meta-data/", "form of an IP address"),
        ("s3://xn--dicom/", "starting with “xn--”"),
        ("s3://sthree-dicom/", "starting with “sthree-”"),
        ("s3://amzn-s3-demo-bucket/", "starting with “amzn-s3-demo-”"),
        ("s3://dicom-s3alias/", "ending with “-s3alias”"),
        ("s3://dicom--ol-s3/", "ending with “--ol-s3”"),
        ("s3://dicom.mrap/", "ending with “.mrap”"),
        ("s3://dicom--x-s3/", "ending with “--x-s3”"),
        ("s3://dicom--table-s3/", "ending with “--table-s3”"),
    ],
)
def test_it_rejects_a_bucket_name_s3_does_not_allow(uri: str, reason: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_s3_uri(uri)
    message = excinfo.value.messages[0]
    assert reason in message
    assert "is not an S3 bucket name" in message


@pytest.mark.parametrize(
    "uri",
    [
        "s3://demo.dicom/",
        "s3://127.0.0.1x/",
        "s3://10.0.0.1.archive/",
        "s3://dicom-xn--a/",
        "s3://my-s3alias-bucket/",
        "s3://dicom-input/incoming/../x/",
    ],
)
def test_it_accepts_a_bucket_name_that_only_resembles_a_forbidden_one(uri: str) -> None:
    validate_s3_uri(uri)


def test_browsing_the_instance_metadata_address_is_refused_before_any_request(
    client_alice: Client, localaws: object
) -> None:
    response = client_alice.get(
        reverse("imports:browse"), {"uri": "s3://169.254.169.254/latest/meta-data/"}
    )
    assert response.status_code == 200
    assert "form of an IP address" in response.content.decode()
    assert localaws.calls("s3") == []  # type: ignore[attr-defined]


def test_a_scan_of_a_dotted_bucket_is_refused_and_nothing_is_saved(
    client_alice: Client,
) -> None:
    response = client_alice.post(
        reverse("imports:scan_start"), {"uri": "s3://demo..dicom/"}
    )
    assert response.status_code == 400
    assert "two dots in a row" in response.content.decode()
    assert not Scan.objects.exists()


# --- The admin's date filters ---------------------------------------------------------------

HOSTILE_DATES = [
    "created_at__year=10000",
    "created_at__year=0",
    "created_at__year=-1",
    f"created_at__year={2**63}",
    "created_at__year=9999&created_at__month=12&created_at__day=31",
    "created_at__year=2024&created_at__month=13",
    "created_at__year=2024&created_at__month=2&created_at__day=30",
    f"created_at__year=2024&created_at__month={2**63}",
    "created_at__day=-1",
    "updated_at__year=10000",
]


@pytest.mark.parametrize("model", ["datastore", "auditevent"])
@pytest.mark.parametrize("query", HOSTILE_DATES)
def test_the_admin_answers_an_impossible_date_filter_without_an_error(
    client_carol: Client, datastore: Datastore, model: str, query: str
) -> None:
    if model == "auditevent" and query.startswith("updated_at"):
        query = "summary__icontains=x&" + query.replace("updated_at", "created_at")
    AuditEvent.objects.create(action=AuditEvent.Action.SIGNED_IN, summary="x")
    response = client_carol.get(f"/admin/imports/{model}/?{query}")
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")
        assert client_carol.get(response["Location"]).status_code == 200


def test_the_admin_still_filters_by_a_real_date(
    client_carol: Client, datastore: Datastore
) -> None:
    year = datastore.created_at.year
    found = client_carol.get(f"/admin/imports/datastore/?created_at__year={year}")
    missed = client_carol.get(f"/admin/imports/datastore/?created_at__year={year - 1}")
    assert "Radiology" in found.content.decode()
    assert "Radiology" not in missed.content.decode()
