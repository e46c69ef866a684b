"""The report page in a real browser: Debian's chromium renders it to PNG and PDF.

Services tier (CI installs chromium): without chromium these fail, they never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from api.render.page import CONTENT_SECURITY_POLICY
from bench.report_page import render
from tests.conftest import ROOT

pytestmark = pytest.mark.services


def _need_chromium() -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")


def test_two_years_render_to_png_and_pdf_asking_for_nothing_else(tmp_path):
    _need_chromium()
    done = subprocess.run(
        [sys.executable, "-m", "bench.report_page", "--out", str(tmp_path), "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: rendered, nothing requested but the page itself" in done.stdout
    pages = int(re.search(r"PDF pages: (\d+)", done.stdout).group(1))
    assert pages >= 2  # two years of questionnaires do not fit one page
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF-")
    html = (tmp_path / "report.html").read_text("utf-8")
    assert "Treatment report: Ana Example" in html and "<script" not in html


BAD_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><title>bad</title>'
    b'<link rel="stylesheet" href="/style.css"/></head>'
    b'<body><img src="https://example.org/pixel.png" alt=""/></body></html>'
)


def test_the_check_fails_a_page_that_asks_for_more_than_itself(tmp_path, capsys):
    _need_chromium()
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-store",
    }
    # Under the page's CSP the loads are blocked, and Chromium says so on its console.
    assert render(BAD_PAGE, headers, tmp_path / "csp", None) == 1
    blocked = capsys.readouterr().err
    assert "violates the following Content Security Policy" in blocked
    assert "example.org/pixel.png" in blocked
    # Without it they are made: the net log and the proxy both see them.
    open_policy = {**headers, "Content-Security-Policy": "default-src *"}
    assert render(BAD_PAGE, open_policy, tmp_path / "open", None) == 1
    made = capsys.readouterr().err
    assert "the page asked for more than itself" in made
    assert "https://example.org/pixel.png" in made and "/style.css" in made
