"""Shared helpers of the renderer tests: the sagas to draw, and binaries the tests need."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sagac.compiler.pipeline import load
from sagac.compiler.plan import Plan

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GOLDEN = HERE / "golden"
# The example sagas (whatever sagas/ holds when the tests run) and the hand-written ones here.
SAGA_FILES = sorted((ROOT / "sagas").glob("*.yaml")) + sorted((HERE / "sagas").glob("*.yaml"))


def saga_id(path: Path) -> str:
    return path.stem


def plan_of(path: Path) -> Plan:
    return load(path)


def need_binary(name: str, package: str) -> str:
    """The path of `name`; without it the test fails in CI (CI=true) and skips locally."""
    found = shutil.which(name)
    if found:
        return found
    reason = f"`{name}` is not installed: run `make system-deps` (apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no phoning home
    "--disable-component-update",
    "--disable-sync",
]
CONSOLE_ERROR = re.compile(r"Uncaught|CONSOLE|Refused to|Content Security Policy|ERR_")


@dataclass(frozen=True)
class BrowserView:
    screenshot: Path
    console_errors: list[str]
    text: str  # the rendered page's text, whitespace folded


def open_in_chromium(page: Path, tmp_path: Path) -> BrowserView:
    """Load `page` in headless Chromium: a screenshot, console errors, and the page's text."""
    chromium = need_binary("chromium", "chromium")
    flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / f"{page.stem}.png"
    shown = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", "--enable-logging=stderr",
         "--v=0", page.as_uri()],
        capture_output=True, timeout=120, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=120, text=True
    ).stdout
    return BrowserView(
        shot,
        [line for line in shown.stderr.splitlines() if CONSOLE_ERROR.search(line)],
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)),
    )


# Measures the laid-out page: the test's copy drops the CSP (which forbids any script) and
# appends this script, whose findings `--dump-dom` then prints as a <pre id="measured">.
_MEASURE = """<script>
const out = {page: [document.documentElement.scrollWidth, window.innerWidth], panels: {},
             tables: {}};
for (const s of document.querySelectorAll("section.panel")) {
  if (s.id) out.panels[s.id] = [s.scrollWidth, s.clientWidth];
  const t = s.querySelector("table");
  if (s.id && t) out.tables[s.id] = {
    heads: [...t.querySelectorAll("thead th")].map(th => th.textContent.trim()),
    rows: [...t.querySelectorAll("tbody tr")].map(
      tr => [...tr.querySelectorAll("td")].map(td => td.innerText.trim())),
  };
}
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def measure_in_chromium(page: Path, tmp_path: Path, width: int, height: int) -> dict[str, Any]:
    """The page laid out by headless Chromium at `width` x `height`: `page` [scroll width,
    viewport width], `panels` {id: [scroll width, client width]}, and `tables` {panel id:
    {heads, rows of cell texts}}."""
    chromium = need_binary("chromium", "chromium")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    probe = tmp_path / f"{page.stem}.measured.html"
    probe.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={width},{height}", "--dump-dom", probe.as_uri()],
        capture_output=True, timeout=120, text=True,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    measured: dict[str, Any] = json.loads(html_module.unescape(found.group(1)))
    return measured
