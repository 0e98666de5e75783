"""The README's picture of the live view is what the view draws today."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_picture_of_the_live_view_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr


def test_the_readme_shows_the_picture() -> None:
    assert "](docs/live-view.svg)" in (ROOT / "README.md").read_text(encoding="utf-8")
