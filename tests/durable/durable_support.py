"""Helpers for durability tests: paths, the CLI as a real subprocess, the fork server (driver.py)
for crashing runs with SIGKILL, and the ledger reader. (Not `conftest`: test folders each have
one, and `from conftest import` would find the wrong one.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SAGAS = HERE / "sagas"
LEDGER_SAGA = SAGAS / "ledger_checkout.yaml"


def sagac(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, stdin: str = "") -> Any:
    """Run `python -m sagac ARGS` in a real process; returns the CompletedProcess."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sagac", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Driver:
    """The fork server: `run(**cmd)` forks a child that runs one command."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "driver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the driver died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


GATED = """\
# Charge, then wait for a person, then ship. A rejection or a timeout refunds the charge.
saga: gated
input:
  type: object
  required: [order_id]
  properties:
    order_id: {{type: string}}
    amount: {{type: number}}
secrets: [API_TOKEN]
actions:
  charge: {{python: "ledger_shop:charge"}}
  refund: {{python: "ledger_shop:refund"}}
  ship: {{python: "ledger_shop:ship"}}
  leaky: {{python: "ledger_shop:leaky"}}
steps:
  - id: charge
    action: charge
    with: {{order_id: "{{{{ input.order_id }}}}"}}
    idempotency_key: "{{{{ input.order_id }}}}-charge"
    keep: [id]
    compensate:
      action: refund
      with: {{payment_id: "{{{{ result.id }}}}"}}
      idempotency_key: "{{{{ input.order_id }}}}-refund"
      retry: {{max_attempts: 2, initial_delay: 10ms}}
  - id: call_api
    action: leaky
    with: {{token: "{{{{ secrets.API_TOKEN | default('none') }}}}"}}
  - approval:
      id: sign_off
      approvers: [alice, "group:finance"]
      message: "Ship order {{{{ input.order_id }}}} for {{{{ input.amount | default(0) }}}} EUR?"
      timeout: {timeout}
      on_timeout: {on_timeout}
  - id: ship
    action: ship
    with: {{order_id: "{{{{ input.order_id }}}}"}}
    idempotency_key: "{{{{ input.order_id }}}}-ship"
output:
  approved_by: "{{{{ steps.sign_off.result.by }}}}"
  value: "{{{{ steps.sign_off.result.value }}}}"
"""


def gated_saga(folder: Path, timeout: str = "1h", on_timeout: str = "reject") -> Path:
    """A saga with an approval gate, written to `folder` next to a copy of its actions."""
    import shutil

    shutil.copy(SAGAS / "ledger_shop.py", folder / "ledger_shop.py")
    path = folder / f"gated_{timeout}_{on_timeout}.yaml"
    path.write_text(GATED.format(timeout=timeout, on_timeout=on_timeout))
    return path
