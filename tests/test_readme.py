"""The README stays in step with what the project generates."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_readme_embeds_the_generated_mermaid_diagram() -> None:
    readme = (ROOT / "README.md").read_text()
    mermaid = (ROOT / "docs/diagrams/checkout_compensated.mmd").read_text().rstrip("\n")
    assert f"```mermaid\n{mermaid}\n```" in readme


def test_readme_shows_the_two_quick_start_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci


def test_docs_diagrams_are_generated_from_the_sagas() -> None:
    """`make diagrams` output is committed; it must match what the renderer draws today."""
    from sagac.compiler.pipeline import load
    from sagac.compiler.render import render_mermaid

    sagas = sorted((ROOT / "sagas").glob("*.yaml"))
    assert sagas
    for path in sagas:
        committed = (ROOT / "docs/diagrams" / f"{path.stem}.mmd").read_text()
        assert committed.rstrip("\n") == render_mermaid(load(path)).rstrip("\n"), (
            f"docs/diagrams/{path.stem}.mmd is stale: run `make diagrams`"
        )


# --- Every command in the README's code blocks runs as written ------------------------------
#
# Each `sh`/`console` block that calls `sagac` runs as one bash script in a scratch folder that
# holds a copy of `sagas/` (so relative paths and the default store `.sagac/sagac.db` work as
# they do for a reader in a clone), with the project's `sagac` first on PATH. The README's
# placeholders (a run id such as `92ab5729…`, a token such as `LhSlXFlk…`) become the run id and
# token the earlier commands of the block printed. Each command must end without a traceback,
# with an exit code the README's story allows, and print what the README shows of it: status
# words, error codes, `(attempt N)` lines.

NOT_RUN = {
    # block (its first command, as written) -> why the test does not run it
    "export SAGAC_STORE=postgresql://": (
        "needs a PostgreSQL server: tests/workers/test_readme_scale_out.py runs this block"
        " against the throw-away one"
    ),
    'python3 -c \'import json; json.dump({"migration_id"': (
        "50,000 users take about 20 s and a SIGKILL of the run itself: run with SAGAC_SOAK=1; "
        "tests/batch/test_crash_resume.py covers the same saga and crash"
    ),
}
SOAK = os.environ.get("SAGAC_SOAK") == "1"
ALLOWED_EXIT = {0, 1, 3, 77, 137}  # ok, compensated, waiting, refused (shown), killed (shown)
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}…")
TOKEN = re.compile(r"(--token )(?!T\b)\S+…")
SHOWN = re.compile(
    r"error\[[A-Z_]+\]|waits for approval"
    r"|\b(?:succeeded|compensated|waiting_approval|running|accepted|refused)\b"
    r"|\w+ \(attempt \d+\)"
)


@dataclass
class Command:
    text: str
    shown: list[str] = field(default_factory=list)  # what the README shows it print

    @property
    def background(self) -> bool:
        return self.text.rstrip().endswith("&")


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def readme_blocks() -> list[tuple[str, list[Command]]]:
    """(kind, commands) of every `sh`/`console` block that calls sagac."""
    text = (ROOT / "README.md").read_text()
    out = []
    for kind, body in re.findall(r"```(sh|console)\n(.*?)```", text, re.S):
        commands: list[Command] = []
        pending: Command | None = None
        for line in body.splitlines():
            if pending is not None:  # a continuation line of a command
                pending.text += "\n" + line
                if _complete(pending.text):
                    pending = None
                continue
            if kind == "console" and not line.startswith("$ "):
                if commands:
                    commands[-1].shown.append(line)
                continue
            if not line.strip():
                continue
            cmd = Command(line[2:] if kind == "console" else line)
            commands.append(cmd)
            if not _complete(cmd.text):
                pending = cmd
        if any(re.search(r"\bsagac\b", c.text) for c in commands):
            out.append((kind, commands))
    return out


def _script(commands: list[Command], outdir: Path) -> str:
    lines = ["set +e", 'RUN=""', 'TOKEN=""']
    for i, c in enumerate(commands):
        text = RUN_ID.sub('"$RUN"', c.text)
        text = TOKEN.sub(r'\1"$TOKEN"', text)
        out = outdir / f"{i:03d}"
        # Braces, not a subshell: a background job's `$!` and an `export` reach what follows.
        lines.append(f"{{ {text}\n}} > {out} 2>&1 </dev/null; echo $? > {out}.rc")
        lines.append(
            f"R=$(cat {outdir}/[0-9][0-9][0-9] | grep -oE '\\brun [0-9a-f]{{32}}' | tail -1)"
            '; [ -n "$R" ] && RUN=${R#run }'
        )
        lines.append(
            f"T=$(cat {outdir}/[0-9][0-9][0-9] | grep -oE -- '--token [^ .…]+' | tail -1)"
            '; [ -n "$T" ] && TOKEN=${T#--token }'
        )
    lines.append("wait")
    return "\n".join(lines) + "\n"


BLOCKS = readme_blocks()


def test_the_readme_has_blocks_of_sagac_commands() -> None:
    assert len(BLOCKS) >= 3
    firsts = {cmds[0].text.split("\n")[0] for _, cmds in BLOCKS}
    for first in NOT_RUN:
        assert any(f.startswith(first) for f in firsts), (
            f"NOT_RUN lists a block not in README: {first}"
        )


def run_in_scratch(commands: list[Command], tmp_path: Path, timeout: float) -> Path:
    """Run a block's commands as one bash script in `tmp_path`, which gets a copy of `sagas/`,
    with this project's `sagac` first on PATH and no SAGAC_ variable of ours; returns the
    folder of their outputs (`NNN` and `NNN.rc` per command)."""
    shutil.copytree(
        ROOT / "sagas", tmp_path / "sagas", ignore=shutil.ignore_patterns("__pycache__")
    )
    outdir = tmp_path / ".out"
    outdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    env.update(NO_COLOR="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    subprocess.run(
        ["bash", "-c", _script(commands, outdir)],
        cwd=tmp_path,
        env=env,
        timeout=timeout,
        check=True,
    )
    return outdir


@pytest.mark.parametrize(
    "commands", [cmds for _, cmds in BLOCKS], ids=[cmds[0].text[:40] for _, cmds in BLOCKS]
)
def test_every_readme_command_runs_as_written(commands: list[Command], tmp_path: Path) -> None:
    reason = next((r for f, r in NOT_RUN.items() if commands[0].text.startswith(f)), None)
    if reason is not None and not SOAK:
        pytest.skip(reason)
    outdir = run_in_scratch(commands, tmp_path, timeout=300)
    background = ""
    for i, c in enumerate(commands):
        got = background + (outdir / f"{i:03d}").read_text()
        rc = int((outdir / f"{i:03d}.rc").read_text())
        assert "Traceback" not in got, f"$ {c.text}\n{got}"
        assert rc in ALLOWED_EXIT, f"$ {c.text}\nexit {rc}\n{got}"
        for shown in SHOWN.findall("\n".join(c.shown)):
            assert shown in got, f"$ {c.text}\nthe README shows {shown!r}; it printed:\n{got}"
        if c.background:
            background = got
    ledger = tmp_path / "ledger.jsonl"
    if any("kill -9" in c.text for c in commands):  # the crash demo: no double charge
        charges = [line for line in ledger.read_text().splitlines() if "payments.charge" in line]
        assert len(charges) == 1


def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    shutil.copytree(
        ROOT / "sagas", tmp_path / "sagas", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAC_")}
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "succeeded" in ran.stdout


def test_make_bench_runs_every_benchmark_in_quick_mode() -> None:
    """`make bench` runs every script in bench/ (the README says so), each with `--quick`."""
    makefile = (ROOT / "Makefile").read_text()
    (listed,) = re.findall(r"^BENCHES := (.*)$", makefile, re.M)
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").glob("*.py"))
    assert sorted(listed.split()) == scripts
    assert re.search(r"^bench: .*\n\t.*\$\(BENCHES\).*--quick", makefile, re.M)
    for script in scripts:
        ran = subprocess.run(
            [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert ran.returncode == 0 and "--quick" in ran.stdout, script
