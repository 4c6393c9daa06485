"""Diagnostics as text (like a compiler), JSON, or SARIF 2.1.0 for code-scanning tools."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from .diagnostics import CODES, Diagnostic

DOCS_URL = "docs/diagnostics.md"


def format_text(
    diagnostics: Iterable[Diagnostic], line_text: Callable[[str, int], str] | None = None
) -> str:
    """`file:line:col: error[E013]: message`, the source line, a caret, and the hint."""
    out: list[str] = []
    for d in diagnostics:
        out.append(f"{d.file}:{d.line}:{d.column}: {d.level.value}[{d.code}]: {d.message}")
        src = line_text(d.file, d.line) if line_text else ""
        if src:
            gutter = f"{d.line:>4} | "
            out.append(gutter + src.rstrip("\n"))
            out.append(" " * (len(gutter) - 2) + "| " + " " * (d.column - 1) + "^")
        if d.hint:
            out.append(f"  hint: {d.hint}")
    return "\n".join(out)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


def format_sarif(diagnostics: list[Diagnostic], tool_version: str) -> str:
    """One SARIF run listing every rule used and every result, with regions."""
    used = sorted({d.code for d in diagnostics})
    index = {code: i for i, code in enumerate(used)}  # one lookup per result, not a scan
    rules = [
        {
            "id": code,
            "name": CODES[code].title,
            "shortDescription": {"text": CODES[code].title},
            "helpUri": f"{DOCS_URL}#{code.lower()}",
            "defaultConfiguration": {"level": CODES[code].severity.value},
        }
        for code in used
    ]
    results = [
        {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": d.level.value,
            "message": {"text": d.message + (f" (hint: {d.hint})" if d.hint else "")},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": d.file},
                        "region": {"startLine": d.line, "startColumn": d.column},
                    }
                }
            ],
        }
        for d in diagnostics
    ]
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "sagac",
                        "version": tool_version,
                        "informationUri": "https://sagac.dev",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2)
