"""Pages in headless Chromium (Debian's package), against a live server, a worker and localaws."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from imports.models import Datastore
from localaws.testing import LocalAWSHandle
from tests.browser.screens import screenshot
from tests.conftest import PASSWORD, WorkerProcess, missing_service

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def page(live_server: Any) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing_service("Chromium is not installed (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # alongside it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )  # fmt: skip
        context = browser.new_context(
            viewport={"width": 1366, "height": 768}, base_url=live_server.url
        )
        tab = context.new_page()
        errors: list[str] = []
        tab.on(
            "console",
            lambda message: (
                errors.append(message.text) if message.type == "error" else None
            ),
        )
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.console_errors = errors  # type: ignore[attr-defined]  # read back by the tests
        tab.expected_statuses = set()  # type: ignore[attr-defined]  # see expect_refusals
        yield tab
        unexpected = unexpected_console_errors(tab)
        browser.close()
        # Queries the test made while Playwright ran have their own connection (Playwright's
        # greenlet has its own context); close it, or PostgreSQL cannot drop the test database.
        connections.close_all()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # Every page test fails on a console error (a CSP violation, a script error, an unexpected 4xx or
    # 5xx), whether or not the test itself looked.
    assert unexpected == [], f"The browser console reported errors: {unexpected}"


# Chromium logs every 4xx or 5xx answer as a console error; a test that provokes a refusal says so.
_FAILED_LOAD = re.compile(
    r"Failed to load resource: the server responded with a status of (\d{3})"
)


def expect_refusals(page: Any, *statuses: int) -> None:
    """Tell the page fixture that answers with these statuses are part of the test, not console errors."""
    page.expected_statuses.update(statuses)


def unexpected_console_errors(page: Any) -> list[str]:
    def expected(error: str) -> bool:
        failed = _FAILED_LOAD.match(error)
        return failed is not None and int(failed.group(1)) in page.expected_statuses

    return [error for error in page.console_errors if not expected(error)]


@pytest.fixture(autouse=True)
def _role_groups(transactional_db: None) -> None:
    """The role groups, which an earlier transactional test's flush removed (seed_demo needs them)."""
    from django.apps import apps

    from imports.roles import sync_role_groups

    sync_role_groups(apps)


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def test_on_the_demo_data_an_operator_browses_scans_and_reads_the_result(
    page: Any, localaws: LocalAWSHandle, celery_worker_process: WorkerProcess
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    sign_in(page, "operator", "operator-demo")
    page.click("nav >> text=Browse")
    # The only datastore opens on its input prefix.
    page.wait_for_selector("#listing >> text=metadata/")
    # htmx swaps the listing in place and pushes the folder's URL.
    page.click("#listing >> text=misc/")
    page.wait_for_selector("#listing >> text=notes/")
    assert "uri=s3%3A%2F%2Fdemo-dicom-input%2Fincoming%2Fmisc%2F" in page.url
    page.click("#listing .breadcrumbs >> text=incoming")
    page.wait_for_selector("#listing >> text=metadata/")

    page.click("text=Scan this prefix")
    page.wait_for_selector("#scan-progress progress")
    # The progress fragment polls until the scan ends, then the page reloads with the results.
    page.wait_for_selector("text=Studies and series", timeout=90_000)
    assert page.is_visible("#scan-progress >> text=Completed")
    tree = page.inner_text("#studies")
    assert "StudyDescription differs between instances" in tree
    assert "“CT CHEST W CONTRAST”, “CT Chest w/ contrast”" in tree
    assert "Doe" not in tree
    problems = page.inner_text("#problems")
    assert "misc/notes/readme.txt" in problems
    assert "misc/attachments/referral-letter.pdf" in problems
    assert page.locator("#json-files .badge.ok").count() == 2
    assert page.locator("#json-files .badge.err").count() == 2
    assert "VR 'PN' does not match the data dictionary" in page.inner_text(
        "#json-files"
    )

    page.click("text=Reveal patient names and IDs")
    page.wait_for_selector("#studies >> text=Mask patient details")
    assert page.console_errors == []


def test_an_administrator_adds_a_datastore_and_checks_it(
    page: Any, carol: Any, localaws: LocalAWSHandle
) -> None:
    datastore_id = localaws.create_datastore("radiology")
    localaws.create_bucket("dicom-input")
    localaws.create_bucket("dicom-output")
    sign_in(page, "carol")
    page.click("nav >> text=Admin")
    page.click("#content-main a[href='/admin/imports/datastore/']")
    page.wait_for_url("**/admin/imports/datastore/")
    page.click(".object-tools a.addlink")
    page.wait_for_url("**/admin/imports/datastore/add/")
    page.fill("#id_name", "Radiology")
    page.select_option("#id_region", "us-east-1")
    page.fill("#id_datastore_id", "NOT-AN-ID")
    page.fill("#id_role_arn", "arn:aws:iam::123456789012:role/ImportRole")
    page.fill("#id_input_s3_uri", "s3://dicom-input/incoming/")
    page.fill("#id_output_s3_uri", "s3://dicom-output/results/")
    page.click("input[name=_save]")
    assert "is not a HealthImaging datastore ID" in page.inner_text("#content")
    assert not Datastore.objects.exists()
    page.fill("#id_datastore_id", datastore_id)
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")

    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "check_connection")
    page.click("button[name=index]")
    messages = page.inner_text("ul.messagelist")
    assert "Radiology · Datastore: Datastore “radiology” is ACTIVE." in messages
    assert (
        "Radiology · Input prefix: s3://dicom-input/incoming/ can be listed; it is empty for now."
        in messages
    )
    assert (
        "Radiology · Output prefix: s3://dicom-output/results/ is writable" in messages
    )


def test_on_the_demo_data_an_operator_composes_previews_and_confirms_an_import(
    page: Any, localaws: LocalAWSHandle
) -> None:
    from imports.models import ScanSeries, ScanStudy
    from imports.scanning import control, run
    from localaws import democorpus

    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    run.scan_run(scan_id=scan.pk)
    abdomen = ScanStudy.objects.get(scan=scan, study_description__icontains="ABDOMEN")
    lung = ScanSeries.objects.get(
        study__scan=scan, series_description="Axial 2.0 B70f lung"
    )

    sign_in(page, "operator", "operator-demo")
    page.click("nav >> text=Drafts")
    page.click("text=New import")
    page.fill("#id_job_name", "demo-import")
    page.click("text=Start composing")
    # The prefix is unchanged since its scan: the composer opens on the tree at once.
    page.wait_for_selector("#suggestions")
    assert "study-ct-chest.json" in page.inner_text("#suggestions")
    assert "series-mr-brain-t2.json" in page.inner_text("#suggestions")
    page.click("text=Accept all suggestions")
    page.wait_for_selector("#mappings >> text=metadata/series-mr-brain-t2.json")
    assert page.locator("#mappings .badge.ok").count() == 2

    # The malformed file is refused with its reason, in place.
    page.check(f"input[value='{abdomen.study_instance_uid}|']")
    page.fill("#file-picker", democorpus.MALFORMED_METADATA_FILE)
    page.click("text=Map to the ticked studies and series")
    page.wait_for_selector("#mappings >> text=not valid JSON")
    assert page.locator("#problems-panel .badge.err").count() >= 1
    screenshot(page, "composer")
    page.locator("tr.study-row", has_text=abdomen.study_instance_uid).locator(
        "button:has-text('Remove')"
    ).click()
    page.wait_for_selector(
        f"#mappings >> text={democorpus.MALFORMED_METADATA_FILE}", state="detached"
    )
    # A removal offers its undo; undone, the mapping is back, and removed again for the rest of the walk.
    assert democorpus.MALFORMED_METADATA_FILE in page.inner_text("#undo")
    page.click("#undo >> text=Undo")
    page.wait_for_selector(f"#mappings >> text={democorpus.MALFORMED_METADATA_FILE}")
    page.locator("tr.study-row", has_text=abdomen.study_instance_uid).locator(
        "button:has-text('Remove')"
    ).click()
    page.wait_for_selector(
        f"#mappings >> text={democorpus.MALFORMED_METADATA_FILE}", state="detached"
    )
    assert page.locator("#mappings .badge.err").count() == 0

    page.click("text=Preview headers")
    page.select_option("#series-choice", lung.series_instance_uid)
    page.click("form >> text=Show")
    # Every instance of the series, with counts; the one-instance detail opens on demand.
    row = page.locator(
        "table.across tr.state-changed", has_text="StudyDescription (0008,1030)"
    )
    assert "CT CHEST W CONTRAST" in row.inner_text()
    assert "×" in row.inner_text()
    page.click("#one-instance summary")
    detail = page.locator("#one-instance tr", has_text="StudyDescription (0008,1030)")
    assert detail.is_visible()
    assert "Doe" not in page.inner_text("#preview")
    screenshot(page, "preview")

    page.click("text=Review and confirm")
    request_text = page.inner_text("#request-json")
    assert '"jobName": "demo-import"' in request_text
    assert '"metadataFilePath": "metadata/study-ct-chest.json"' in request_text
    page.check("input[name=acknowledge_warnings]")
    screenshot(page, "confirm")
    page.click("text=Confirm the import")
    page.wait_for_selector("text=Its status below follows it to HealthImaging")
    assert "/jobs/" in page.url
    assert page.console_errors == []


@pytest.fixture
def nested_bucket(localaws: LocalAWSHandle) -> Datastore:
    localaws.create_bucket("dicom-input")
    for key in (
        "incoming/p1/deeper/a.dcm",
        "incoming/p1/b.dcm",
        "incoming/p2/c.dcm",
    ):
        localaws.put(f"s3://dicom-input/{key}", b"not really DICOM")
    return Datastore.objects.create(
        name="Radiology",
        region="us-east-1",
        datastore_id="0123456789abcdef0123456789abcdef",
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri="s3://dicom-input/incoming/",
        output_s3_uri="s3://dicom-output/results/",
    )


def browse_state(page: Any) -> tuple[str, str, str]:
    """What the URI field, the current breadcrumb and the address bar each say is shown."""
    from urllib.parse import parse_qs, urlparse

    crumb = page.get_attribute("#listing .breadcrumbs a[aria-current=location]", "href")
    return (
        page.input_value("#id_uri"),
        parse_qs(urlparse(crumb).query)["uri"][0],
        parse_qs(urlparse(page.url).query).get("uri", [""])[0],
    )


def test_the_uri_field_breadcrumbs_and_address_bar_agree_after_clicks_back_forward_and_reload(
    page: Any, alice: Any, nested_bucket: Datastore
) -> None:
    sign_in(page, "alice")
    page.goto("/browse/")
    assert page.input_value("#id_uri") == "s3://dicom-input/incoming/"

    page.click("#listing >> text=p1/")
    page.wait_for_selector("#listing .breadcrumbs >> text=p1")
    p1 = "s3://dicom-input/incoming/p1/"
    assert browse_state(page) == (p1, p1, p1)

    page.click("#listing >> text=deeper/")
    page.wait_for_selector("#listing .breadcrumbs >> text=deeper")
    deeper = "s3://dicom-input/incoming/p1/deeper/"
    assert browse_state(page) == (deeper, deeper, deeper)

    page.go_back()
    page.wait_for_selector("#listing >> text=deeper/")
    assert browse_state(page) == (p1, p1, p1)

    page.go_forward()
    page.wait_for_selector("#listing >> text=a.dcm")
    assert browse_state(page) == (deeper, deeper, deeper)

    page.reload()
    page.wait_for_selector("#listing >> text=a.dcm")
    assert browse_state(page) == (deeper, deeper, deeper)

    # Typing a folder without its slash: the field and the address bar show it as a folder.
    page.fill("#id_uri", "s3://dicom-input/incoming/p2")
    page.click("button:text-is('Open')")
    page.wait_for_selector("#listing >> text=c.dcm")
    p2 = "s3://dicom-input/incoming/p2/"
    assert browse_state(page) == (p2, p2, p2)
    # Restoring history must not need an inline style (strict CSP): no violation, no error.
    page.go_back()
    page.wait_for_selector("#listing >> text=a.dcm")
    assert page.console_errors == []


def test_choosing_a_datastore_opens_it_without_pressing_open(
    page: Any, alice: Any, nested_bucket: Datastore
) -> None:
    Datastore.objects.create(
        name="Cardiology",
        region="us-east-1",
        datastore_id="fedcba9876543210fedcba9876543210",
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri="s3://dicom-input/incoming/p2/",
        output_s3_uri="s3://dicom-output/results/",
    )
    sign_in(page, "alice")
    page.goto("/browse/")
    page.select_option("#id_datastore", label="Cardiology")
    page.wait_for_selector("#listing >> text=c.dcm")
    p2 = "s3://dicom-input/incoming/p2/"
    assert browse_state(page) == (p2, p2, p2)
    page.select_option("#id_datastore", label="Radiology")
    page.wait_for_selector("#listing >> text=p1/")
    incoming = "s3://dicom-input/incoming/"
    assert browse_state(page) == (incoming, incoming, incoming)
    assert page.console_errors == []


def test_no_main_page_scrolls_sideways_at_390_px(
    page: Any, live_server: Any, localaws: LocalAWSHandle
) -> None:
    """Document width equals viewport width on every main page: tables scroll inside their card."""
    from django.apps import apps

    from imports.roles import sync_role_groups
    from imports.scanning import control, run

    # An earlier transactional test's flush erased the role groups the migration made.
    sync_role_groups(apps)
    # The demo data has what widened pages: long keys, long UIDs, studies spelled two ways.
    call_command("seed_demo", stdout=io.StringIO())
    scan, _ = control.scan_start(
        actor=None,
        bucket="demo-dicom-input",
        prefix="incoming/",
        region="us-east-1",
        datastore=Datastore.objects.first(),
        enqueue=False,
    )
    assert run.scan_run(scan_id=scan.pk) is not None

    narrow = page.context.browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=live_server.url
    )
    phone = narrow.new_page()
    sign_in(phone, "operator", "operator-demo")
    width = "[document.documentElement.scrollWidth, window.innerWidth]"
    widths = {}
    for path in (
        "/",
        "/browse/",
        "/scans/",
        f"/scans/{scan.pk}/",
        "/audit/",
        "/audit/?action=bogus",
        "/scans/999999/",  # the 404 page
    ):
        phone.goto(path)
        widths[path] = phone.evaluate(width)
    assert phone.inner_text("h1") == "Not found"
    narrow.clear_cookies()
    sign_in(phone, "viewer", "viewer-demo")
    phone.goto("/browse/")  # refused to a viewer: the 403 page
    assert phone.is_visible("text=Your role does not allow this")
    widths["403"] = phone.evaluate(width)
    assert widths == {path: [390, 390] for path in widths}
    narrow.close()


def test_on_the_demo_data_an_operator_fixes_a_study_description_and_confirms_with_the_keyboard_only(
    page: Any, localaws: LocalAWSHandle
) -> None:
    from imports.drafts import services as drafts
    from imports.models import ImportDraft, ScanStudy
    from imports.scanning import control, run
    from localaws import democorpus

    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    scan, _ = control.scan_start(
        actor=None,
        bucket=democorpus.INPUT_BUCKET,
        prefix=democorpus.INPUT_PREFIX,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    run.scan_run(scan_id=scan.pk)
    chest = ScanStudy.objects.get(scan=scan, variants__has_key="StudyDescription")
    draft = drafts.draft_start(
        actor=None,
        datastore=datastore,
        input_s3_uri=democorpus.INPUT_S3_URI,
        output_s3_uri=democorpus.OUTPUT_S3_URI,
    )
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{draft.pk}/")
    page.wait_for_selector("#tree")

    def tab_to(selector: str) -> None:
        for _ in range(200):
            if page.evaluate(
                "s => document.activeElement === document.querySelector(s)", selector
            ):
                return
            page.keyboard.press("Tab")
        raise AssertionError(f"Tab never reached {selector}")

    # From the composer to "Fix", then into the editor, without the mouse.
    tab_to(f"a[aria-label='Fix StudyDescription of study {chest.study_instance_uid}']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#fix")
    assert "most instances" in page.inner_text("#fix")
    assert page.input_value("#rows-2-value") == democorpus.CANONICAL_CHEST_DESCRIPTION
    # One more attribute, typed: the tag is looked up and the row checked as it is typed.
    tab_to("#rows-3-tag")
    page.keyboard.type("StudyID")
    page.wait_for_selector("#row-3-check >> text=Study ID")
    page.keyboard.press("Tab")
    page.keyboard.type("S-0001-TOO-LONG-FOR-SH")
    page.wait_for_selector("#row-3-check >> text=SH is at most 16 characters")
    for _ in range(len("-TOO-LONG-FOR-SH")):
        page.keyboard.press("Backspace")
    page.wait_for_selector("#editor-status >> text=every row is valid")
    screenshot(page, "editor")
    tab_to("button[value=save]")
    page.keyboard.press("Enter")
    page.wait_for_selector(
        f"#mappings >> text=metadata/{chest.study_instance_uid}.json"
    )
    assert "Wrote metadata/" in page.inner_text(".messages")
    mapping = ImportDraft.objects.get(pk=draft.pk).mappings.get()
    assert mapping.metadata_file_path == f"metadata/{chest.study_instance_uid}.json"
    body = (
        localaws.s3_client()
        .get_object(
            Bucket=democorpus.INPUT_BUCKET,
            Key=democorpus.INPUT_PREFIX + mapping.metadata_file_path,
        )["Body"]
        .read()
    )
    assert b'"00200010": {\n    "vr": "SH",\n    "Value": [\n      "S-0001"' in body

    # Still without the mouse: from the composer to the confirmation, the warnings acknowledged, confirmed.
    tab_to(f"a[href='/drafts/{draft.pk}/confirm/']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#request-json")
    if page.locator("input[name=acknowledge_warnings]").count():
        tab_to("input[name=acknowledge_warnings]")
        page.keyboard.press("Space")
        assert page.is_checked("input[name=acknowledge_warnings]")
    tab_to(f"form[action='/drafts/{draft.pk}/confirm/'] button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Its status below follows it to HealthImaging")
    assert ImportDraft.objects.get(pk=draft.pk).jobs.count() == 1
    assert page.console_errors == []
