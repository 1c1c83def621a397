"""The console check every page test ends with, and the htmx indicator that must not need an inline style."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_browser import (  # noqa: F401 - the page fixture
    expect_refusals,
    page,
    sign_in,
    unexpected_console_errors,
)

CSP_STYLE = (
    "Refused to apply inline style because it violates the following Content Security Policy directive"
)  # fmt: skip
REFUSED_LOAD = "Failed to load resource: the server responded with a status of 422 ()"


class _Tab:
    def __init__(self, errors: list[str]) -> None:
        self.console_errors = errors
        self.expected_statuses: set[int] = set()


def test_any_console_error_is_unexpected_unless_the_test_declared_that_status() -> None:
    tab = _Tab([CSP_STYLE, REFUSED_LOAD])
    assert unexpected_console_errors(tab) == [CSP_STYLE, REFUSED_LOAD]
    expect_refusals(tab, 422)
    assert unexpected_console_errors(tab) == [CSP_STYLE]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_htmx_adds_no_inline_style_and_the_indicator_rule_comes_from_the_stylesheet(
    page: Any,  # noqa: F811
    alice: Any,
) -> None:
    sign_in(page, "alice")
    page.goto("/browse/")
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.evaluate("document.querySelectorAll('style').length") == 0
    rules = page.evaluate(
        "[...document.styleSheets].flatMap(s => [...s.cssRules].map(r => r.selectorText))"
    )
    assert ".htmx-indicator" in rules
    assert page.console_errors == []
