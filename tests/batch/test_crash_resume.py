"""SIGKILL in the middle of a 10,000-user migration, then `sagac resume`: every user is
migrated exactly once (effective ledger entries), and a run that then fails undoes every user
it migrated, before and after the crash, once each, newest first.

The run is the example saga (sagas/user_migration.yaml, its real action module) driven through
the Python API on the SQLite journal by driver.py in its own process, which dies by SIGKILL at
a random point: inside an action, right after the outside world acted and before the runtime
could journal it (the worst moment), or right after a random journal write. The seed is in the
test id; SAGAC_SOAK=1 tries more of them.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest

from .batch_support import (
    EXAMPLE,
    completed_in_journal,
    drive,
    effective,
    journal,
    read_ledger,
    sagac_cli,
    users_input,
)

USERS = 10_000
SEEDS = range(8) if os.environ.get("SAGAC_SOAK") == "1" else [3]


def setup(tmp_path: Path, data: dict) -> tuple[Path, Path, Path]:
    db, ledger, inp = tmp_path / "journal.db", tmp_path / "ledger.jsonl", tmp_path / "in.json"
    inp.write_text(json.dumps(data))
    return db, ledger, inp


@pytest.mark.parametrize("where", ["in_action", "after_event"])
@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_then_resume_migrates_every_user_exactly_once(tmp_path, where, seed):
    rng = random.Random(seed)
    db, ledger, inp = setup(tmp_path, users_input(USERS))
    env = {"SAGAC_DEMO_LEDGER": str(ledger)}
    cmd = {"db": str(db), "saga": str(EXAMPLE), "input": str(inp), "run_id": "mig"}
    if where == "in_action":
        crash_env = {**env, "SAGAC_DEMO_CRASH_AT": f"u_{rng.randrange(100, USERS - 100):06d}"}
        first = drive(cmd, crash_env)
    else:
        # Events: saga_started, prepare's pair, the foreach's start, then one per batch.
        first = drive({**cmd, "kill_at_event": rng.randrange(6, 190)}, env)
    assert first.returncode == -signal.SIGKILL, first.stderr
    before = journal(db, "mig")
    done_before = completed_in_journal(before, "migrate_users")
    assert 0 < len(done_before) < USERS
    assert not [e for e in before if e["type"] == "step_started" and "item_index" in e]

    second = sagac_cli("resume", "mig", "--store", f"sqlite:///{db}", env=env)
    assert second.returncode == 0, second.stderr + second.stdout
    assert "succeeded" in second.stdout
    assert "▸ migrate_users 10000/10000 (100.0%)" in second.stderr  # the last progress line

    entries = read_ledger(ledger)
    migrated = effective(entries, "users.migrate")
    assert sorted(migrated) == [f"u_{i:06d}" for i in range(USERS)]  # each exactly once
    events = journal(db, "mig")
    done = completed_in_journal(events, "migrate_users")
    assert sorted(done) == list(range(USERS))  # journaled once each, across both processes
    # Only items whose completion the crash kept from the journal ran again (same key).
    replays = [e for e in entries if e["action"] == "users.migrate" and e["args"].get("replayed")]
    assert len(replays) <= 50  # at most the batch in flight (balanced preset: 50)
    keys = {e["key"] for e in entries if e["action"] == "users.migrate"}
    assert len(keys) == USERS


def test_after_a_resume_a_failure_undoes_every_migrated_user_once_newest_first(tmp_path):
    locked = 6000
    db, ledger, inp = setup(tmp_path, users_input(USERS, locked=locked))
    env = {"SAGAC_DEMO_LEDGER": str(ledger)}
    cmd = {"db": str(db), "saga": str(EXAMPLE), "input": str(inp), "run_id": "mig"}
    first = drive(cmd, {**env, "SAGAC_DEMO_CRASH_AT": "u_002500"})
    assert first.returncode == -signal.SIGKILL, first.stderr

    second = sagac_cli("resume", "mig", "--store", f"sqlite:///{db}", "--json", env=env)
    assert second.returncode == 1, second.stderr
    report = json.loads(second.stdout)
    assert report["status"] == "compensated"
    f = report["failure"]
    assert (f["item_index"], f["detail"]["batch_number"]) == (locked, locked // 50 + 1)
    assert f["detail"]["cursor"] == f"u_locked_{locked:06d}"

    events = journal(db, "mig")
    done = completed_in_journal(events, "migrate_users")
    assert set(range(2400)) <= set(done)  # done before the crash: compensated too
    item_comps = [c["item_index"] for c in report["compensations"] if c["step"] == "migrate_users"]
    assert item_comps == list(reversed(done))  # newest first, across both processes
    entries = read_ledger(ledger)
    undone = effective(entries, "users.unmigrate")
    assert undone == [f"u_{i:06d}" for i in reversed(done)]  # each once, in that order
    assert sorted(undone) == sorted(effective(entries, "users.migrate"))
    assert [e["action"] for e in entries][-1] == "users.drop_target"
