"""Secrets through the real CLI: values derived from a secret, URL-encoded echoes of it in an
http error body, and secrets too short to mask. Nothing may reach the SQLite journal, the
`--events` file, the report or `sagac show`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

ECHO_SHOP = '''
def echo(**kwargs):
    """Returns what it was given (as a careless API might): the runtime must redact it."""
    return {"echo": kwargs, "seen": " / ".join(sorted(str(v) for v in kwargs.values()))}
'''

DERIVED = """\
saga: derived
secrets: [API_TOKEN]
actions:
  echo: {python: "echo_shop:echo"}
steps:
  - id: call
    action: echo
    with:
      upper: "{{ secrets.API_TOKEN | upper }}"
      reversed: "{{ secrets.API_TOKEN[::-1] }}"
      joined: "{{ secrets.API_TOKEN | list | join('-') }}"
      bearer: "Bearer {{ secrets.API_TOKEN | replace('-', '_') }}"
  - id: after
    action: {mock: {fail: DECLINED}}
    with: {why: "{{ steps.call.result.seen }}"}
    errors: [DECLINED]
"""

ECHOED_URL = """\
saga: echoed
secrets: [API_TOKEN]
env: [ECHO_BASE]
steps:
  - id: fetch
    action:
      http:
        method: GET
        url: "{{ env.ECHO_BASE }}/items/{{ secrets.API_TOKEN }}?t={{ secrets.API_TOKEN }}"
"""


def _sagac(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _everything(tmp_path: Path, saga: str, env: dict[str, str], *extra: str) -> list[str]:
    """Run `saga` with a SQLite journal and `--events`, then `show` it: every text produced,
    and the journal's files and rows."""
    (tmp_path / "echo_shop.py").write_text(ECHO_SHOP)
    path = tmp_path / "saga.yaml"
    path.write_text(saga)
    store = f"sqlite:///{tmp_path / 'j.db'}"
    events = tmp_path / "ev.jsonl"
    ran = _sagac(
        "run",
        str(path),
        "--store",
        store,
        "--json",
        "--events",
        str(events),
        *extra,
        cwd=tmp_path,
        env=env,
    )
    assert ran.returncode == 1, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    texts = [ran.stdout, ran.stderr, events.read_text()]
    for cmd in (("show", run_id), ("show", run_id, "--json")):
        out = _sagac(*cmd, "--store", store, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        texts.append(out.stdout)
    for f in tmp_path.glob("j.db*"):  # the file itself, its WAL and shared memory
        texts.append(f.read_bytes().decode("latin-1"))
    with sqlite3.connect(tmp_path / "j.db") as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            texts.append(repr(c.execute(f'SELECT * FROM "{table}"').fetchall()))
    return texts


def test_values_derived_from_a_secret_never_reach_the_journal_events_or_show(
    tmp_path: Path,
) -> None:
    secret = "tok-live-4711-abc"
    texts = _everything(tmp_path, DERIVED, {"API_TOKEN": secret})
    forms = [secret, secret.upper(), secret[::-1], "-".join(secret), secret.replace("-", "_")]
    for form in forms:
        assert all(form not in text for text in texts), form
    # The result was journaled, masked: its values, never its keys.
    assert any('"upper": "***"' in text for text in texts)


def test_an_http_error_body_echoing_the_url_encoded_secret_is_masked(
    tmp_path: Path, http_server: Any
) -> None:
    # The loopback server answers unknown paths with 404 and the path it was sent, as
    # received: the secret's spaces and quotes URL-encoded by the client.
    secret = 'open sesame "4711"'
    texts = _everything(
        tmp_path,
        ECHOED_URL,
        {"API_TOKEN": secret, "ECHO_BASE": http_server.url("")},
    )
    assert "HTTP_404" in texts[0]
    encoded = "open%20sesame%20%224711%22"
    assert [r.path for r in http_server.requests] == [f"/items/{encoded}"]
    for form in (secret, encoded, json.dumps(secret)[1:-1]):
        assert all(form not in text for text in texts), form


def test_a_secret_shorter_than_four_characters_is_refused(tmp_path: Path) -> None:
    (tmp_path / "echo_shop.py").write_text(ECHO_SHOP)
    path = tmp_path / "saga.yaml"
    path.write_text(DERIVED)
    ran = _sagac("run", str(path), "--store", "memory", cwd=tmp_path, env={"API_TOKEN": "e"})
    assert ran.returncode == 4
    assert "API_TOKEN" in ran.stderr and "at least 4" in ran.stderr
    assert "Traceback" not in ran.stderr
