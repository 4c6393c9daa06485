"""Startup benchmark: what a command costs before it does anything, against `python -c pass`.

Run with `.venv/bin/python bench/startup.py [--rounds N] [--quick]`. Times, in rounds that
interleave the commands (the shared CPU drifts within minutes), the wall time of `python -c
pass` (the interpreter alone), `sagac --help`, `sagac validate` of a small saga and `sagac run`
of it (default store: a SQLite journal in a temporary folder); prints each median and its ratio
to `python -c pass` of the same run, against the targets (`--help` under 0.1 s, `run` under 0.35
s). Then, from `python -X importtime`, each command's heaviest imports and which of the heavy
libraries (networkx, jinja2, jsonschema, pydantic, rich, httpx, yaml) it loaded.

Bytecode is cached as an installed package has it (pip writes it): PYTHONDONTWRITEBYTECODE is
dropped for the commands, or every module of the project would be compiled from source on
every start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAGA = """\
saga: small
input:
  type: object
  properties:
    order: {type: string}
actions:
  reserve: {mock: {result: {id: R1}}}
  charge: {mock: {result: {id: P1}}}
  undo: {mock: {result: {}}}
steps:
  - {id: reserve, action: reserve, with: {order: "{{ input.order }}"}, compensate: {action: undo}}
  - id: charge
    action: charge
    with: {reservation: "{{ steps.reserve.result.id }}"}
    compensate: {action: undo}
output: {payment: "{{ steps.charge.result.id }}"}
"""
HEAVY = ("networkx", "jinja2", "jsonschema", "fastjsonschema", "pydantic", "rich", "httpx", "yaml")
TARGETS = {"sagac --help": 0.1, "sagac run": 0.35}


def sagac_command() -> list[str]:
    """The installed `sagac` script next to this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("sagac")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sagac"]


def commands(folder: Path) -> dict[str, list[str]]:
    sagac = sagac_command()
    saga = str(folder / "small.yaml")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "sagac --help": [*sagac, "--help"],
        "sagac validate": [*sagac, "validate", saga],
        "sagac run": [*sagac, "run", saga, "--input", '{"order": "O1"}'],
    }


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def import_costs(cmd: list[str], cwd: Path) -> list[tuple[int, int, str]]:
    """(cumulative us, nesting depth, module) of every import, from -X importtime."""
    env = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    out = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part for part in line[len("import time:") :].split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        out.append((int(cumulative), depth, name.strip()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--top", type=int, default=8, help="heaviest imports shown per command")
    parser.add_argument("--quick", action="store_true", help="3 rounds: what `make bench` runs")
    args = parser.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 3)
    folder = Path(tempfile.mkdtemp(prefix="sagac-startup-"))
    try:
        (folder / "small.yaml").write_text(SAGA)
        cmds = commands(folder)
        for cmd in cmds.values():  # warm up: the OS's file cache, the journal's schema
            wall(cmd, folder)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.rounds):
            for name, cmd in cmds.items():
                times[name].append(wall(cmd, folder))
        base = statistics.median(times["python -c pass"])
        print(f"medians of {args.rounds} interleaved rounds (ratio to `python -c pass`):")
        for name, samples in times.items():
            t = statistics.median(samples)
            line = f"  {name:<16}{t * 1e3:8.1f} ms  x{t / base:5.1f}"
            if name in TARGETS:
                met = "met" if t < TARGETS[name] else "NOT met"
                line += f"   target < {TARGETS[name] * 1e3:.0f} ms: {met}"
            print(line)
        print("\nimports (python -X importtime, cumulative):")
        for name, cmd in cmds.items():
            if name == "python -c pass":
                continue
            costs = import_costs(cmd, folder)
            total = sum(c for c, depth, _ in costs if depth == 0)
            heavy = {m: c for c, _, m in costs if m in HEAVY}
            loaded = ", ".join(f"{m} {c / 1e3:.0f} ms" for m, c in heavy.items()) or "none"
            print(f"  {name}: {total / 1e3:.0f} ms of imports; heavy libraries: {loaded}")
            top = sorted((c for c in costs if c[1] == 0), reverse=True)[: args.top]
            print("    " + ", ".join(f"{m} {c / 1e3:.0f}" for c, _, m in top) + " (ms)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
