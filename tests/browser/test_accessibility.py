"""The main screens pass axe-core 4.11.0 and the phone checks, at 390 px and at 1366 px.

Each screen, at each width, is checked three ways:
- axe-core (static/vendor/axe-core) finds no serious or critical violation;
- the document is no wider than the viewport (tables scroll inside their card), and at 1366 px no admin
  change list hides columns under its filter;
- at 390 px every visible target is at least 24 × 24 px, or has the spacing WCAG 2.5.8 allows instead:
  a 24 px circle centred on it meets no other target and no other small target's circle. A link inside a
  sentence (an `a` in a `p` or `li`) is the success criterion's inline exception.

axe is added as an init script: it runs in each new document outside the page's content-security-policy, so the
policy users get stays as strict as it is, and the page fixture still fails on any CSP violation the page makes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from imports.campaigns import services as campaigns
from imports.drafts import services as drafts
from imports.models import (
    Campaign,
    Datastore,
    ImportDraft,
    ImportJob,
    ImportJobResult,
    Scan,
)
from localaws.testing import LocalAWSHandle
from tests.browser.test_browser import page, sign_in  # noqa: F401 - the page fixture
from tests.builders import make_job
from tests.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = ROOT / "static" / "vendor" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
MIN_TARGET = 24


@dataclass
class World:
    """The demo data, scanned, with a draft holding the suggested mappings and a job with results."""

    scan: Scan
    draft: ImportDraft
    job: ImportJob
    campaign: Campaign
    chest_study: str
    mapped_series: str


@pytest.fixture
def world(localaws: LocalAWSHandle) -> World:
    from imports.models import ScanStudy
    from imports.scanning import control, run
    from localaws import democorpus

    call_command("seed_demo", stdout=io.StringIO())
    datastore = Datastore.objects.get()
    operator = User.objects.get(username="operator")
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
        actor=operator,
        datastore=datastore,
        input_s3_uri=democorpus.INPUT_S3_URI,
        output_s3_uri=democorpus.OUTPUT_S3_URI,
    )
    draft = drafts.draft_accept_suggestions(
        draft=draft, actor=operator, version=draft.version
    )
    mapping = draft.mappings.exclude(series_instance_uid="").first()
    assert mapping is not None
    return World(
        scan=scan,
        draft=draft,
        job=_completed_job(datastore, operator),
        # The demo prefix planned into four jobs: the plan, its Start button and the object list.
        campaign=campaigns.campaign_plan(
            actor=operator,
            datastore=datastore,
            inputs=[democorpus.INPUT_S3_URI],
            max_files=120,
        ).campaign,
        chest_study=chest.study_instance_uid,
        mapped_series=mapping.series_instance_uid,
    )


def _completed_job(datastore: Datastore, actor: User) -> ImportJob:
    """A confirmed job that ended with errors, its results read: every section of the job page shows."""
    job = make_job(
        datastore,
        actor=actor,
        job_name="demo-import",
        status=ImportJob.Status.COMPLETED,
        aws_job_id="c" * 32,
        submitted_at=timezone.now(),
        ended_at=timezone.now(),
        results=ImportJob.Results.DONE,
        success_count=1,
        failure_count=1,
        image_sets=[{"imageSetId": "1" * 32, "imageSetVersion": 1, "isPrimary": True}],
    )
    ImportJobResult.objects.bulk_create(
        [
            ImportJobResult(job=job, outcome="success", line=1, input_file="incoming/ct/chest/0001.dcm", image_set_id="1" * 32, is_primary=True),
            ImportJobResult(job=job, outcome="failure", line=1, input_file="incoming/misc/notes/readme.txt", exception_type="ValidationException", message="DICOM attribute TransferSyntaxUID does not exist"),
        ]
    )  # fmt: skip
    return job


@dataclass(frozen=True)
class Screen:
    user: str
    path: Callable[[World], str]
    ready: str  # a selector shown once the screen's htmx fragments have loaded


SCREENS = {
    "dashboard": Screen("operator", lambda w: "/", "h1"),
    "browse": Screen("operator", lambda w: "/browse/", "#listing table"),
    "scan-result": Screen("operator", lambda w: f"/scans/{w.scan.pk}/", "#studies"),
    "drafts": Screen("operator", lambda w: "/drafts/", "h1"),
    "composer": Screen("operator", lambda w: f"/drafts/{w.draft.pk}/", "#tree"),
    "editor": Screen(
        "operator",
        lambda w: (
            f"/drafts/{w.draft.pk}/editor/?study={w.chest_study}&fix=StudyDescription"
        ),
        "#fix",
    ),
    "preview": Screen(
        "operator",
        lambda w: f"/drafts/{w.draft.pk}/preview/?series={w.mapped_series}",
        "#preview",
    ),
    "confirmation": Screen(
        "operator", lambda w: f"/drafts/{w.draft.pk}/confirm/", "#request-json"
    ),
    "job": Screen("operator", lambda w: f"/jobs/{w.job.pk}/", "#job-files"),
    "jobs": Screen("operator", lambda w: "/jobs/", "h1"),
    "audit": Screen("operator", lambda w: "/audit/", "h1"),
    "campaigns": Screen("operator", lambda w: "/campaigns/", "#id_inputs"),
    "campaign": Screen(
        "operator", lambda w: f"/campaigns/{w.campaign.pk}/", "#campaign-objects"
    ),
    "admin-datastores": Screen(
        "admin", lambda w: "/admin/imports/datastore/", "#result_list"
    ),
}
PASSWORDS = {"operator": "operator-demo", "admin": "admin-demo"}

AXE_RUN = """async () => {
  const results = await axe.run(document, {resultTypes: ['violations']});
  return results.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(' '))}));
}"""

# What reaches past the viewport's right edge outside any scrolling box: the outermost such elements, and
# the elements whose own text does (an unbreakable word overflows its box, which itself fits).
WIDENERS = """() => {
  const clippedFrom = start => {
    for (let p = start; p && p !== document.body; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true;
    }
    return false;
  };
  const right = node => {
    if (node.nodeType === Node.ELEMENT_NODE) return node.getBoundingClientRect().right;
    const range = document.createRange();
    range.selectNodeContents(node);
    return range.getBoundingClientRect().right;
  };
  const past = node => right(node) > window.innerWidth + 0.5;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node && found.length < 5; node = walker.nextNode()) {
    const el = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
    if (!past(node) || clippedFrom(node === el ? el.parentElement : el)) continue;
    if (node.nodeType === Node.ELEMENT_NODE && el.parentElement && past(el.parentElement)) continue;
    if (node.nodeType === Node.TEXT_NODE && past(el)) continue;
    found.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${[...el.classList].map(c => '.' + c).join('')} ` +
      `${Math.round(right(node))}px "${node.textContent.trim().slice(0, 30)}"`);
  }
  return found;
}"""

# Targets smaller than 24 x 24 px whose 24 px circle meets another target or another small target's circle.
SMALL_TARGETS = """(min) => {
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button]';
  const visible = el => {
    // checkVisibility: a closed <details> keeps a layout box for its content, which is not shown.
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && !el.closest('.visually-hidden') &&
      el.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true});
  };
  const inSentence = el => el.tagName === 'A' && el.closest('p, li') !== null;
  const targets = [...document.querySelectorAll(selector)].filter(visible);
  const boxes = targets.map(el => el.getBoundingClientRect());
  const small = targets.map((el, i) => !inSentence(el) && (boxes[i].width < min || boxes[i].height < min));
  const centre = b => [b.left + b.width / 2, b.top + b.height / 2];
  const circleMeetsBox = ([x, y], b) => {
    const dx = Math.max(b.left - x, 0, x - b.right), dy = Math.max(b.top - y, 0, y - b.bottom);
    return dx * dx + dy * dy < (min / 2) ** 2;
  };
  const circlesMeet = ([x1, y1], [x2, y2]) => (x1 - x2) ** 2 + (y1 - y2) ** 2 < min * min;
  const describe = (el, b) => {
    const name = (el.getAttribute('aria-label') || el.innerText || el.value || el.name || el.outerHTML).trim().slice(0, 60);
    return `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${name}" ${Math.round(b.width)}x${Math.round(b.height)}`;
  };
  const crowded = [];
  targets.forEach((el, i) => {
    if (!small[i]) return;
    const c = centre(boxes[i]);
    const neighbour = targets.findIndex((other, j) => j !== i && !other.contains(el) && !el.contains(other) &&
      (circleMeetsBox(c, boxes[j]) || (small[j] && circlesMeet(c, centre(boxes[j])))));
    if (neighbour !== -1) crowded.push(`${describe(el, boxes[i])} next to ${describe(targets[neighbour], boxes[neighbour])}`);
  });
  return crowded;
}"""


def _problems(tab: Any, viewport: dict[str, int]) -> list[str]:
    problems = [
        f"axe {v['id']} ({v['impact']}): {', '.join(v['targets'])}"
        for v in tab.evaluate(AXE_RUN)
    ]
    # A change list whose columns hide under the admin's filter sidebar (#changelist-form .results scrolls).
    hidden = tab.evaluate(
        "[...document.querySelectorAll('#changelist-form .results')]"
        ".filter(r => r.scrollWidth > r.clientWidth + 1).length"
    )
    if hidden and viewport == LAPTOP:
        problems.append("the change list is wider than the room the filter leaves it")
    width = tab.evaluate("document.documentElement.scrollWidth")
    if width > viewport["width"]:
        problems.append(f"the page is {width} px wide: {tab.evaluate(WIDENERS)}")
    if viewport == PHONE:
        problems += [
            f"small target: {t}" for t in tab.evaluate(SMALL_TARGETS, MIN_TARGET)
        ]
    return problems


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390px", "1366px"])
@pytest.mark.parametrize("name", list(SCREENS))
def test_the_screen_has_no_serious_axe_violation_no_sideways_scroll_and_big_enough_targets(
    page: Any,  # noqa: F811
    world: World,
    name: str,
    viewport: dict[str, int],
) -> None:
    screen = SCREENS[name]
    page.set_viewport_size(viewport)
    page.add_init_script(path=str(AXE))
    sign_in(page, screen.user, PASSWORDS[screen.user])
    page.goto(screen.path(world))
    page.wait_for_selector(screen.ready)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof axe.run") == "function"
    problems = _problems(page, viewport)
    assert problems == [], f"{name} at {viewport['width']} px:\n" + "\n".join(problems)


def test_the_check_reports_a_crowded_small_target_and_a_serious_violation(
    page: Any,  # noqa: F811
    alice: User,
) -> None:
    """The failing case: two small buttons side by side, an image without alt text and a 400-letter word."""
    page.set_viewport_size(PHONE)
    page.add_init_script(path=str(AXE))
    sign_in(page, "alice")
    page.evaluate(
        """() => {
          const main = document.querySelector('main');
          for (const label of ['x', 'y']) {
            const b = document.createElement('button');
            b.textContent = label;
            b.className = 'linkish';
            b.setAttribute('aria-label', label);
            main.append(b);
          }
          const img = document.createElement('img');
          img.src = '/static/favicon.svg';
          main.append(img);
          const wide = document.createElement('div');
          wide.textContent = 'x'.repeat(400);
          main.append(wide);
        }"""
    )
    problems = _problems(page, PHONE)
    assert any(p.startswith("axe image-alt (critical)") for p in problems), problems
    assert any(p.startswith('small target: button "x"') for p in problems), problems
    assert any(p.startswith("the page is ") for p in problems), problems
