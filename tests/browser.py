"""Headless Chromium for the tests of kamflow's HTML pages: Debian's `chromium`, run once per
check on a fresh profile. The `chromium` fixture (in conftest.py) finds it, or skips the test
where it is missing, unless CI or KAMFLOW_REQUIRE_BROWSER says it must be there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRE_BROWSER = bool(os.environ.get("CI") or os.environ.get("KAMFLOW_REQUIRE_BROWSER"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def find_chromium() -> str:
    """Debian's chromium; the test is skipped when it is missing, unless CI or
    KAMFLOW_REQUIRE_BROWSER is set (then it fails)."""
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    return found


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium once, on a fresh profile; its stderr noise is not judged."""
    profile.mkdir()
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result
