"""The README stays in step with what the project generates."""

from __future__ import annotations

from pathlib import Path

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
