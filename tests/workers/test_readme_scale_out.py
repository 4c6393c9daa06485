"""The README's "Scale out" block runs as written, against the throw-away PostgreSQL server
(its URL in place of the README's), with the machinery of tests/test_readme.py."""

from __future__ import annotations

import json
from pathlib import Path

from test_readme import readme_blocks, run_in_scratch
from throwaway_pg import PgServer

README_URL = "postgresql://sagac@db.example.internal:5432/sagac"


def test_the_scale_out_block_runs_as_written(pg_server: PgServer, tmp_path: Path) -> None:
    (commands,) = [
        c for _, c in readme_blocks() if c[0].text.startswith(f"export SAGAC_STORE={README_URL}")
    ]
    url = pg_server.database()
    for c in commands:
        c.text = c.text.replace(README_URL, url)
    outdir = run_in_scratch(commands, tmp_path, timeout=120)
    outputs = {}
    for i, c in enumerate(commands):
        got = (outdir / f"{i:03d}").read_text()
        rc = int((outdir / f"{i:03d}.rc").read_text())
        assert "Traceback" not in got, f"$ {c.text}\n{got}"
        assert rc == 0, f"$ {c.text}\nexit {rc}\n{got}"
        outputs[c.text.split("#")[0].strip()] = got
    worker = next(v for k, v in outputs.items() if k.startswith("sagac worker"))
    lines = [json.loads(line) for line in worker.splitlines()]
    finished = {x["run_id"]: x["status"] for x in lines if x["event"] == "finished"}
    assert sorted(finished.values()) == ["compensated", "succeeded"]
    assert lines[-1]["event"] == "worker_stopped" and lines[-1]["exit_code"] == 0
    listed = next(v for k, v in outputs.items() if k == "sagac workers")
    assert str(lines[0]["pid"]) in listed and "running" in listed
    assert "no stuck runs" in next(v for k, v in outputs.items() if "--status stuck" in k)
