"""Every refused change is shown where it was made, in place, with DEBUG on and off.

With DEBUG on, django-htmx's script replaces the page with any 400, 403, 404 or 500 answer; refusals answer 422
and conflicts 409, which base.html's htmx-config swaps into the form's target. Each test runs in both modes.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command

from imports.drafts import services as drafts
from imports.models import Datastore, ImportDraft, ScanStudy
from localaws.testing import LocalAWSHandle
from tests.browser.test_browser import expect_refusals, page, sign_in  # noqa: F401 - the page fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request: pytest.FixtureRequest, settings: Any) -> bool:
    settings.DEBUG = request.param
    return bool(request.param)


@pytest.fixture
def demo_draft(localaws: LocalAWSHandle) -> ImportDraft:
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
    return drafts.draft_start(
        actor=None,
        datastore=datastore,
        input_s3_uri=democorpus.INPUT_S3_URI,
        output_s3_uri=democorpus.OUTPUT_S3_URI,
    )


def assert_still_the_site(tab: Any, debug: bool) -> None:
    """The page was not replaced by a bare fragment (django-htmx's DEBUG handler) and kept its scripts."""
    assert tab.is_visible("header.topbar >> text=HealthImaging Import Dashboard")
    scripts = tab.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert any("django-htmx.js" in src for src in scripts) is debug


def test_composer_refusals_are_shown_in_their_form_and_keep_what_was_typed(
    page: Any,  # noqa: F811
    demo_draft: ImportDraft,
    debug: bool,
) -> None:
    expect_refusals(page, 422, 409)
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{demo_draft.pk}/")
    page.wait_for_selector("#tree")
    job_form = page.locator("#composer form", has=page.locator("h2", has_text="Job"))

    # A job name with characters HealthImaging refuses.
    job_form.locator("#id_job_name").fill("bad name!!")
    job_form.locator("button", has_text="Save").click()
    job_form = page.locator("#composer form", has=page.locator("h2", has_text="Job"))
    job_form.locator("#refusal").wait_for()
    assert "A job name is 1-64 characters" in job_form.inner_text()
    assert job_form.locator("#id_job_name").input_value() == "bad name!!"
    assert_still_the_site(page, debug)

    # Map with nothing ticked: the typed path stays.
    page.fill("#file-picker", "metadata/study-ct-chest.json")
    page.click("text=Map to the ticked studies and series")
    page.wait_for_selector("#assign-form #refusal")
    assert "Nothing was saved" in page.inner_text("#assign-form #refusal")
    assert page.input_value("#file-picker") == "metadata/study-ct-chest.json"
    assert_still_the_site(page, debug)

    # A CSV with a problem on every row: each is listed, in the CSV form.
    page.set_input_files(
        "#csv-file",
        files=[
            {
                "name": "m.csv",
                "mimeType": "text/csv",
                "buffer": b"studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
                b"1.2.a3,,a.json\n1.2.3,,../b.json\n1.2.3," + b"1" * 513 + b",c.json\n",
            }
        ],
    )
    page.click("#composer button:text-is('Load')")
    csv_form = page.locator("#composer form", has=page.locator("#csv-file"))
    csv_form.locator("#refusal").wait_for()
    listed = csv_form.locator("#refusal li").all_inner_texts()
    assert [item.split(":")[0] for item in listed] == [
        "Row 1 studyInstanceUID",
        "Row 2 metadataFilePath",
        "Row 3 seriesInstanceUID",
    ]
    assert_still_the_site(page, debug)
    assert not demo_draft.mappings.exists()
    assert page.console_errors == [
        error for error in page.console_errors if "status of 422" in error
    ]


def test_keyboard_focus_stays_in_the_form_after_an_htmx_answer(
    page: Any,  # noqa: F811
    demo_draft: ImportDraft,
) -> None:
    expect_refusals(page, 422)
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{demo_draft.pk}/")
    page.wait_for_selector("#tree")
    page.fill("#file-picker", "metadata/study-ct-chest.json")
    page.focus("text=Map to the ticked studies and series")
    page.keyboard.press("Enter")
    page.wait_for_selector("#assign-form #refusal")
    page.wait_for_function("() => document.activeElement !== document.body")
    focused = page.evaluate(
        "() => { const a = document.activeElement;"
        " return {inForm: !!a.closest('#assign-form'), tag: a.tagName, text: a.innerText}; }"
    )
    assert focused["inForm"], focused
    # Then the keyboard goes on from there: Tab reaches the next control, not the page's top.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => !!document.activeElement.closest('#composer')")


def test_a_stale_tabs_save_says_the_draft_changed_and_shows_the_newer_state(
    page: Any,  # noqa: F811
    demo_draft: ImportDraft,
    debug: bool,
) -> None:
    expect_refusals(page, 409)
    sign_in(page, "operator", "operator-demo")
    page.goto(f"/drafts/{demo_draft.pk}/")
    page.wait_for_selector("#tree")

    other = page.context.new_page()
    other.goto(f"/drafts/{demo_draft.pk}/")
    other.fill("#id_job_name", "from-the-other-tab")
    other.locator("#composer form", has=other.locator("h2", has_text="Job")).locator(
        "button", has_text="Save"
    ).click()
    other.wait_for_selector("#composer >> text=version 2")
    other.close()

    page.fill("#id_job_name", "from-this-tab")
    page.locator("#composer form", has=page.locator("h2", has_text="Job")).locator(
        "button", has_text="Save"
    ).click()
    page.wait_for_selector("#refusal >> text=This draft changed since you opened it")
    assert "version 2" in page.inner_text("#composer > p.muted")
    assert page.input_value("#id_job_name") == "from-the-other-tab"
    assert_still_the_site(page, debug)
    demo_draft.refresh_from_db()
    assert demo_draft.job_name == "from-the-other-tab"


def test_saving_over_an_existing_file_without_replace_is_refused_by_that_checkbox(
    page: Any,  # noqa: F811
    demo_draft: ImportDraft,
    debug: bool,
) -> None:
    from localaws import democorpus

    expect_refusals(page, 422)
    chest = ScanStudy.objects.get(
        scan=demo_draft.scan, variants__has_key="StudyDescription"
    )
    sign_in(page, "operator", "operator-demo")
    page.goto(
        f"/drafts/{demo_draft.pk}/editor/?study={chest.study_instance_uid}"
        f"&path={democorpus.STUDY_METADATA_FILE}"
    )
    page.wait_for_selector("text=Replace the existing file")
    page.fill("#rows-1-value", "TYPED BEFORE THE REFUSAL")
    page.click("button[value=save]")
    page.wait_for_selector("#editor form #refusal")
    assert "tick “Replace the existing file”" in page.inner_text("#refusal")
    assert page.input_value("#rows-1-value") == "TYPED BEFORE THE REFUSAL"
    assert_still_the_site(page, debug)
