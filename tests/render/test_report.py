"""The run report: one self-contained HTML file, checked as text and in headless Chromium."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sagac.compiler.render import render_report_html

from . import run_fixture
from .conftest import HERE, need_binary, open_in_chromium, plan_of

PLAN = HERE / "sagas" / "all_kinds.yaml"


class _Resources(HTMLParser):
    """Every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for name, value in attrs:
            fetching = name in ("src", "href", "xlink:href", "action", "data") and value
            if fetching and not str(value).startswith(("#", "data:")):
                self.fetches.append(f"{tag} {name}={value}")
            if name == "rel" and value == "stylesheet":
                self.fetches.append("stylesheet link")


@pytest.fixture(scope="module")
def report_html() -> str:
    need_binary("dot", "graphviz")
    return render_report_html(
        plan_of(PLAN),
        run_fixture.report(),
        run_fixture.events(),
        run_fixture.approvals(),
        run_fixture.audit(),
    )


def test_report_is_self_contained(report_html: str) -> None:
    parser = _Resources()
    parser.feed(report_html)
    assert parser.fetches == []
    assert parser.scripts == 0
    assert "default-src 'none'" in report_html  # the CSP forbids fetching anything at all
    assert "@import" not in report_html and "url(http" not in report_html


def test_report_shows_the_run(report_html: str) -> None:
    assert 'id="run-status"' in report_html and ">compensated</span>" in report_html
    assert "BATCH_ITEM_FAILED" in report_html
    assert "OUT_OF_STOCK &lt;sku-9&gt;" in report_html  # escaped, not markup
    assert "Looks fine &lt;b&gt;really&lt;/b&gt;" in report_html
    assert "not a listed approver" in report_html
    assert '<svg class="timeline"' in report_html and '<svg class="diagram"' in report_html
    for step in ("undo per_item", "undo race_x", "undo left_a", "undo reserve"):
        assert step in report_html  # a timeline row per compensation
    assert "approved by alice" in report_html


def test_report_needs_attention_and_empty_sections() -> None:
    need_binary("dot", "graphviz")
    report = {
        "run_id": "r2",
        "saga": "all_kinds",
        "status": "compensation_failed",
        "failure": {"step": "announce", "code": "UNEXPECTED"},
        "compensations": [{"step": "reserve", "status": "failed", "attempts": 4,
                           "error": {"code": "UNAVAILABLE", "message": "down"}}],
        "needs_attention": ["reserve"],
    }  # fmt: skip
    html = render_report_html(plan_of(PLAN), report, [])
    assert 'id="needs-attention"' in html and "compensation failed" in html
    assert "No timed events were recorded" in html
    assert "No approvals were requested." in html and "No audit entries." in html


def test_report_in_headless_chromium(report_html: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    view = open_in_chromium(page, tmp_path)
    assert view.screenshot.stat().st_size > 20_000  # a real picture, not a blank page
    assert view.console_errors == []
    text = view.text
    assert "Failed at" in text and "per_item" in text and "BATCH_ITEM_FAILED" in text
    assert "Compensations" in text
    for step in ("per_item", "race_x", "left_a", "reserve"):
        assert re.search(rf"\b{step}\b\s+ok\b", re.sub(r"\s+", " ", text)), step


def test_a_gate_shows_its_wait_and_each_decision_reads_as_words() -> None:
    """A gate that waited 12 s reads `completed · waited 12 s`, not the 0 ms of its completion
    event; approval rows (the store's shape) say who, when, what, the wait and the comment."""
    need_binary("dot", "graphviz")
    events = [
        {"type": "approval_requested", "seq": 1, "at": "2026-01-05T09:00:00.000Z",
         "step": "sign_off"},
        {"type": "approval_decided", "seq": 2, "at": "2026-01-05T09:00:12.500Z",
         "decided_at": "2026-01-05T09:00:12.000Z", "step": "sign_off", "approved": True,
         "by": "bob"},
        {"type": "step_completed", "seq": 3, "at": "2026-01-05T09:00:13.000Z",
         "step": "sign_off", "attempt": 1, "duration_ms": 0},
    ]  # fmt: skip
    row = {
        "run_id": "r3", "gate": "sign_off", "key": "k-1", "message": "Please approve",
        "approvers": ["alice", "group:ops"], "context": {"input.x": 1},
        "deadline": "2026-01-07T09:00:00.000Z", "deadline_epoch": 1767776400.0,
        "on_timeout": "reject", "definition_hash": "sha256:" + "ab" * 32,
        "status": "approved", "requested_at": "2026-01-05T09:00:00.000Z", "requested_seq": 1,
        "decided_by": "bob", "decided_at": "2026-01-05T09:00:12.000Z", "comment": "ok <b>",
        "value": {"priority": 2}, "decision_code": None,
    }  # fmt: skip
    html = render_report_html(plan_of(PLAN), {"run_id": "r3", "status": "running"}, events, [row])
    assert "completed · waited 12 s" in html and "completed · 0 ms" not in html
    section = html[html.index('id="approvals"') : html.index('id="audit"')]
    for shown in ("sign_off", "k-1", "Please approve", "approvers: alice, group:ops", "bob",
                  "2026-01-05 09:00:12 UTC", "asked 2026-01-05 09:00:00 UTC", "12 s",
                  "ok &lt;b&gt;", 'value {&#34;priority&#34;: 2}', ">approved<"):  # fmt: skip
        assert shown in section, shown
    for raw in ("1767776400", "sha256:", "deadline_epoch", "input.x", "2026-01-05T09"):
        assert raw not in section, raw  # no epochs, hashes, JSON columns or raw timestamps

    from sagac.compiler.render.pages import approval_rows

    words = [
        (r["decision"], r["code"], r["deadline"])
        for r in approval_rows(
            [
                {**row, "status": "rejected", "decision_code": "APPROVAL_REJECTED"},
                {**row, "status": "timed_out", "decision_code": "APPROVAL_TIMEOUT"},
                {**row, "status": "pending", "decided_by": None, "decided_at": None},
            ]
        )
    ]
    assert words == [
        ("rejected", "", ""),
        ("timed out", "APPROVAL_TIMEOUT", ""),
        ("waiting", "", "2026-01-07 09:00:00 UTC"),
    ]


def test_a_parked_run_with_a_switch_and_a_call_in_headless_chromium(tmp_path: Path) -> None:
    """The report of a run of every issue-13 kind: the sleep and the wait on the timeline, the
    node waiting for its signal, the case taken, the call's child run; no console error."""
    from .test_overlay import WAITS, _waits_run

    events = [
        *_waits_run(),
        {"type": "case_chosen", "seq": 20, "at": "2025-03-01T10:15:00Z", "step": "route",
         "case": "default"},
    ]  # fmt: skip
    html = render_report_html(plan_of(WAITS), {"run_id": "r9", "status": "waiting"}, events)
    assert "hold_room: due · 15 m 0 s" in html  # the sleep's bar on the timeline
    assert "waiting for payment_confirmed" in html
    assert "took default" in html and "child run child_42" in html
    assert '<td class="mono wrap">call called/reserve.yaml</td>' in html  # nodes table
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    view = open_in_chromium(page, tmp_path)
    assert view.console_errors == []
    assert "for signal payment_confirmed" in view.text
