"""Where the browser tests put their screenshots: var/screenshots/ unless SCREENSHOTS_DIR says otherwise.

The README shows docs/screenshots/. Tests never write there by default, so a test run leaves the work tree
clean; `make screenshots` runs the browser tests with SCREENSHOTS_DIR=docs/screenshots, and the refreshed images
are then committed on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def screenshots_dir() -> Path:
    return Path(os.environ.get("SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")


def screenshot(page: Any, name: str) -> Path:
    """The whole page as `<name>.png`; a blank or failed capture fails the test."""
    folder = screenshots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # caret="initial": Playwright would otherwise inject a style to hide the caret, which the CSP blocks.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    assert path.stat().st_size > 10_000, f"{path} is too small to show a page"
    return path
