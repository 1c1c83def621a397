"""Every URL pattern × every role × GET and POST, against the matrix declared here.

A new view must be added to EXPECTED (the test fails on a pattern it does not know), and a view that
forgets its role check answers "ok" where the matrix says 403 or the login page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from imports.drafts import services as drafts
from imports.models import AuditEvent, Campaign, ImportDraft, ImportJob, Scan
from imports.roles import ADMINISTRATOR, OPERATOR, VIEWER
from tests.builders import make_datastore, make_job, scan_prefix, seed_prefix
from tests.conftest import _user

ANONYMOUS, NOBODY = "anonymous", "nobody"
ROLES = [ANONYMOUS, NOBODY, VIEWER, OPERATOR, ADMINISTRATOR]
RANK = {role: rank for rank, role in enumerate(ROLES)}
# A rule: the least role that reaches the view (403 below it), PUBLIC, ADMIN_SITE (the admin's own
# login page below Administrator), None when the method is not allowed (405, after the login page), or
# NOT_ALLOWED when a public view refuses the method to anyone, signed in or not (405).
PUBLIC, ADMIN_SITE, NOT_ALLOWED = "public", "admin site", "not allowed"
Rule = str | None
A = ADMIN_SITE

EXPECTED: dict[str, tuple[Rule, Rule]] = {
    # name: (GET, POST)
    "login": (PUBLIC, PUBLIC),
    "logout": (None, PUBLIC),
    "favicon.ico": (PUBLIC, PUBLIC),
    # Probes for load balancers: no login; a 503 (not healthy) is an answer too.
    "imports:healthz": (PUBLIC, NOT_ALLOWED),
    "imports:readyz": (PUBLIC, NOT_ALLOWED),
    "imports:metrics": (PUBLIC, NOT_ALLOWED),
    "imports:dashboard": (VIEWER, None),
    "imports:browse": (OPERATOR, None),
    "imports:scan_list": (VIEWER, None),
    "imports:scan_start": (None, OPERATOR),
    "imports:scan_detail": (VIEWER, None),
    "imports:scan_progress": (VIEWER, None),
    "imports:scan_cancel": (None, OPERATOR),
    "imports:scan_read_rest": (None, OPERATOR),
    "imports:scan_reveal": (None, OPERATOR),
    "imports:scan_export": (VIEWER, None),
    "imports:draft_from_scan": (None, OPERATOR),
    "imports:draft_list": (VIEWER, None),
    "imports:draft_new": (OPERATOR, OPERATOR),
    "imports:draft_detail": (VIEWER, None),
    "imports:draft_progress": (VIEWER, None),
    "imports:draft_assign": (None, OPERATOR),
    "imports:draft_unmap": (None, OPERATOR),
    "imports:draft_accept_suggestions": (None, OPERATOR),
    "imports:draft_upload_csv": (None, OPERATOR),
    "imports:draft_export": (VIEWER, None),
    "imports:draft_settings": (None, OPERATOR),
    # Approving patient changes: the Approver grant, which administrators hold too (the matrix's roles
    # hold no separate Approver group; tests/drafts/test_approval.py covers one).
    "imports:draft_approve": (None, ADMINISTRATOR),
    # A correction sheet: reviewed (GET: the one the session holds, else back to the draft) and written.
    "imports:draft_corrections": (OPERATOR, OPERATOR),
    "imports:draft_corrections_write": (None, OPERATOR),
    "imports:draft_refresh_index": (None, OPERATOR),
    "imports:draft_delete": (OPERATOR, OPERATOR),
    "imports:draft_preview": (VIEWER, None),
    "imports:draft_reveal": (None, OPERATOR),
    "imports:draft_confirm": (VIEWER, OPERATOR),
    "imports:draft_prediction": (VIEWER, None),
    "imports:editor": (VIEWER, OPERATOR),
    "imports:editor_row": (None, OPERATOR),
    "imports:editor_tags": (VIEWER, None),
    "imports:job_list": (VIEWER, None),
    "imports:job_export": (VIEWER, None),
    "imports:job_export_jsonl": (VIEWER, None),
    "imports:jobs_active": (VIEWER, None),
    "imports:job_detail": (VIEWER, None),
    "imports:job_status": (VIEWER, None),
    "imports:job_results": (VIEWER, None),
    "imports:job_results_download": (VIEWER, None),
    "imports:job_retry_failed": (None, OPERATOR),
    "imports:job_clone": (None, OPERATOR),
    "imports:job_verification": (VIEWER, None),
    "imports:job_verify_again": (None, OPERATOR),
    # The signed record holds patient values: only those who may reveal them.
    "imports:job_record": (OPERATOR, None),
    "imports:campaign_list": (VIEWER, None),
    "imports:campaign_detail": (VIEWER, None),
    "imports:campaign_progress": (VIEWER, None),
    "imports:campaign_export": (VIEWER, None),
    "imports:campaign_export_jsonl": (VIEWER, None),
    "imports:campaign_plan": (None, OPERATOR),
    "imports:campaign_start": (None, OPERATOR),
    "imports:campaign_retry_failed": (None, OPERATOR),
    "imports:campaign_pause": (None, OPERATOR),
    "imports:campaign_resume": (None, OPERATOR),
    "imports:campaign_cancel": (None, OPERATOR),
    "imports:campaign_clean": (None, OPERATOR),
    "imports:audit_list": (VIEWER, None),
    "imports:audit_export": (VIEWER, None),
    "imports:audit_export_jsonl": (VIEWER, None),
    # The admin site: Administrators only; everyone else is sent to its login page.
    "admin:login": (PUBLIC, PUBLIC),
    "admin:logout": (A, A),
    "admin:index": (A, A),
    "admin:password_change": (A, A),
    "admin:password_change_done": (A, A),
    "admin:autocomplete": (A, A),
    "admin:jsi18n": (A, A),
    "admin:view_on_site": (A, A),
    "admin:app_list": (A, A),
    "admin/<catch-all>": (A, A),
}
for _model in ("auth_user", "auth_group", "imports_datastore", "imports_auditevent"):
    for _view in ("changelist", "add", "history", "delete", "change"):
        EXPECTED[f"admin:{_model}_{_view}"] = (A, A)
    EXPECTED[f"admin/{_model}/<object_id>/"] = (A, A)
EXPECTED["admin:auth_user_password_change"] = (A, A)

# What the Administrator meets that is not "ok": the audit trail is append-only even in the admin, a few
# admin views take one method only, the autocomplete needs its parameters, and signing out of the admin
# ends on the login page.
ADMINISTRATOR_OUTCOMES = {
    ("admin:imports_auditevent_add", "GET"): "403",
    ("admin:imports_auditevent_add", "POST"): "403",
    ("admin:imports_auditevent_delete", "GET"): "403",
    ("admin:imports_auditevent_delete", "POST"): "403",
    ("admin:imports_auditevent_change", "POST"): "403",
    ("admin:password_change_done", "POST"): "405",
    ("admin:jsi18n", "POST"): "405",
    ("admin:autocomplete", "GET"): "403",
    ("admin:autocomplete", "POST"): "405",
    ("admin:logout", "GET"): "405",
    ("admin:logout", "POST"): "login",
}


@dataclass(frozen=True)
class Route:
    key: str
    url_name: str | None
    route: str
    params: tuple[str, ...]


def _routes() -> Iterator[Route]:
    def walk(
        patterns: list[URLPattern | URLResolver], prefix: str, namespace: str
    ) -> Iterator[Route]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                ns = pattern.namespace or namespace
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), ns)
                continue
            route = prefix + str(pattern.pattern)
            params = tuple(pattern.pattern.regex.groupindex)
            name = (
                f"{namespace}:{pattern.name}"
                if namespace and pattern.name
                else pattern.name
            )
            if name is None:
                # The admin's unnamed patterns: the object redirect and the final catch-all.
                match = re.fullmatch(r"admin/(\w+)/(\w+)/<path:object_id>/", route)
                key = (
                    f"admin/{match.group(1)}_{match.group(2)}/<object_id>/"
                    if match
                    else "admin/<catch-all>"
                    if route.startswith("admin/")
                    else route
                )
            else:
                key = name
            yield Route(key, name, route, params)

    yield from walk(get_resolver().url_patterns, "", "")


ROUTES = list(_routes())


@pytest.fixture
def world(localaws: object, db: None) -> dict[str, object]:
    """The fixed world: one completed scan, one draft on it, one user of each role."""
    seed_prefix(localaws)  # type: ignore[arg-type]
    scan = scan_prefix()
    datastore = make_datastore()
    draft = drafts.draft_start(
        actor=None,
        datastore=datastore,
        input_s3_uri=datastore.input_s3_uri,
        output_s3_uri=datastore.output_s3_uri,
    )
    users = {
        NOBODY: _user("nobody", None),
        VIEWER: _user("bob", VIEWER),
        OPERATOR: _user("alice", OPERATOR),
        ADMINISTRATOR: _user("carol", ADMINISTRATOR),
    }
    AuditEvent.objects.create(action=AuditEvent.Action.SIGNED_IN, summary="x")
    job = make_job(
        datastore,
        draft=draft,
        request=drafts.draft_request(draft=draft),
        key="role-matrix",
    )
    campaign = Campaign.objects.create(
        datastore=datastore, max_files=5000, max_bytes=10**10, max_folders=10_000
    )
    return {
        "scan": scan,
        "draft": draft,
        "job": job,
        "campaign": campaign,
        "datastore": datastore,
        "users": users,
    }


def _url(route: Route, world: dict[str, object]) -> str:
    scan, draft, job = world["scan"], world["draft"], world["job"]
    assert isinstance(job, ImportJob)
    assert isinstance(scan, Scan)
    assert isinstance(draft, ImportDraft)
    values: dict[str, str] = {}
    for param in route.params:
        if param == "pk":
            values[param] = str(
                draft.pk
                if route.route.startswith("drafts/")
                else job.pk
                if route.route.startswith("jobs/")
                else world["campaign"].pk  # type: ignore[attr-defined]
                if route.route.startswith("campaigns/")
                else scan.pk
            )
        elif param == "fmt":
            values[param] = "csv"
        elif param in ("object_id", "id"):
            match = re.match(r"admin/(\w+)/(\w+)/", route.route)
            model = apps.get_model(match.group(1), match.group(2)) if match else User
            values[param] = str(model._default_manager.order_by("pk").first().pk)  # type: ignore[union-attr]
        elif param == "content_type_id":
            values[param] = str(ContentType.objects.get_for_model(Scan).pk)
        elif param == "app_label":
            values[param] = "imports"
        elif param == "url":
            values[param] = "no-such-page/"
        else:
            raise AssertionError(f"no value for <{param}> in {route.route}")

    def fill(match: re.Match[str]) -> str:
        return values[match.group("name")]

    url = re.sub(r"<(?:\w+:)?(?P<name>\w+)>", fill, route.route)
    url = re.sub(r"\(\?P<(?P<name>\w+)>[^)]*\)", fill, url)
    url = url.lstrip("^").rstrip("$").replace("\\Z", "")
    return "/" + url


def _outcome(status: int, location: str) -> str:
    if status == 302 and location.startswith(("/accounts/login/", "/admin/login/")):
        return "login"
    if status in (403, 405, 500):
        return str(status)
    return "ok"


def _expected(route: Route, rule: Rule, role: str, method: str) -> str:
    if rule == NOT_ALLOWED:
        return "405"
    if rule == PUBLIC:
        # Signing out ends on the login page, whoever asked.
        return "login" if route.key == "logout" else "ok"
    if role == ANONYMOUS:
        return "login"
    if rule is None:
        return "405"
    if rule == ADMIN_SITE:
        if role == ADMINISTRATOR:
            return ADMINISTRATOR_OUTCOMES.get((route.key, method), "ok")
        # The admin answers its sign-out to anyone else with a redirect to its index, which then
        # sends them to its login page.
        return "ok" if route.key == "admin:logout" else "login"
    return "ok" if RANK[role] >= RANK[rule] else "403"


def test_every_url_pattern_is_in_the_matrix() -> None:
    keys = {route.key for route in ROUTES}
    assert keys - set(EXPECTED) == set(), "add the new views to EXPECTED"
    assert set(EXPECTED) - keys == set(), "EXPECTED names views that no longer exist"


@pytest.mark.parametrize("route", ROUTES, ids=[r.key for r in ROUTES])
def test_each_role_meets_the_matrix(route: Route, world: dict[str, object]) -> None:
    url = _url(route, world)
    users = world["users"]
    assert isinstance(users, dict)
    actual: dict[tuple[str, str], str] = {}
    expected: dict[tuple[str, str], str] = {}
    for role in ROLES:
        for method, rule in zip(("GET", "POST"), EXPECTED[route.key], strict=True):
            client = Client()
            if role != ANONYMOUS:
                client.force_login(users[role])
            # Each request in a savepoint that is rolled back: a POST that deletes or cancels leaves
            # the world as it was for the next role.
            with transaction.atomic():
                response = getattr(client, method.lower())(url)
                transaction.set_rollback(True)
            actual[role, method] = _outcome(
                response.status_code, response.get("Location", "")
            )
            expected[role, method] = _expected(route, rule, role, method)
    assert actual == expected, url
