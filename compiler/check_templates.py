"""E016, E017, E018, E021, E022, E024: template syntax, and what each template may read.

For each template site (`template_sites`) the checker asks what the template reads
(`templates.analyze`) and whether that is in scope where it is written: a name that exists
there, a step certain to have completed before it runs (or guarded when it may be skipped), a
field the step keeps, no secret in an idempotency key. It never renders a template and never
runs user code.
"""

from __future__ import annotations

from . import ir
from .check_facts import Facts, action_refs, diag, did_you_mean
from .diagnostics import Diagnostic
from .loader import Document
from .template_sites import Site, template_sites
from .templates import Read, TemplateInfo, analyze

BASE_NAMES = ("input", "steps", "run", "env", "secrets")
RUN_FIELDS = ("id", "saga")
STEP_FIELDS = ("result", "status")
GUESSES_PER_SAGA = 100  # "did you mean" hints for unknown step ids, at most, per saga


class _TemplateChecker:
    """Checks what each template reads against what is in scope where it is written."""

    def __init__(self, saga: ir.Saga, facts: Facts, doc: Document) -> None:
        self.saga, self.facts, self.doc = saga, facts, doc
        self.nodes = facts.graph.nodes
        self.out: list[Diagnostic] = []
        # A "did you mean" compares against every node id: bounded, so that a huge saga full of
        # unknown reads stays linear to check (the first ones are the ones a person reads).
        self.guesses_left = GUESSES_PER_SAGA
        self.info = TemplateInfo()  # the analysis of the template being checked
        # Named actions are checked as if written in each step that uses them.
        self.users: dict[str, list[tuple[ir.Effectful, bool]]] = {}
        for n, ref, compensation in action_refs(saga):
            if ref.name is not None:
                self.users.setdefault(ref.name, []).append((n, compensation))

    def run(self) -> list[Diagnostic]:
        for site in template_sites(self.saga):
            info = analyze(site.text)
            if info.error is not None:
                line = f" (line {info.error_line} of the template)" if "\n" in site.text else ""
                self.report(
                    site,
                    "E016",
                    f"template syntax error in {site.field}: {info.error}{line}",
                    'templates are Jinja2 expressions, e.g. "order-{{ input.order_id }}"',
                )
                continue
            self.info = info
            reads = info.reads
            for read in dict.fromkeys(reads) if len(reads) > 1 else reads:
                self.read(site, read)
        return self.out

    def report(self, site: Site, code: str, msg: str, hint: str | None) -> None:
        d = diag(self.doc, code, msg, site.path, hint)
        if not self.out or self.out[-1] != d:  # `a | default(a)` reads `a` twice: say it once
            self.out.append(d)

    def in_on_failure(self, site: Site) -> bool:
        return site.node is not None and site.node.id in self.facts.in_on_failure

    def allowed(self, site: Site) -> list[str]:
        names = list(BASE_NAMES)
        if site.where == "compensate":
            names += ["result", "error", "failure"]
        if self.in_on_failure(site):
            names += ["failure", "report"]
        if site.args:
            names.append("args")
        if site.item:
            names.append(site.item)
        return names

    def read(self, site: Site, read: Read) -> None:
        root, chain = read.root, read.chain
        if site.item is not None and root == site.item:
            return
        first = chain[0] if chain and isinstance(chain[0], str) else None
        if root == "input":
            return
        if root == "steps":
            if first is not None:
                self.step_read(site, first, chain)
        elif root in ("env", "secrets"):
            if root == "secrets" and site.path[-1] == "idempotency_key":
                self.secret_key(site)
            self.env_read(site, root, first)
        elif root == "run":
            if first is not None and first not in RUN_FIELDS:
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `run.{first}`: `run` has only `id` and `saga`",
                    did_you_mean(first, RUN_FIELDS).strip() or None,
                )
        elif root in ("result", "error"):
            if site.where != "compensate":
                self.report(
                    site,
                    "E018",
                    f"{site.field} reads `{root}`, which exists only inside `compensate`",
                    "to read a step's result elsewhere, write `steps.<id>.result`",
                )
            elif root == "result" and first is not None and site.node is not None:
                self.keep(site, site.node, first, "result")
        elif root == "failure":
            if site.where != "compensate" and not self.in_on_failure(site):
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `failure`, which exists only inside `compensate` and "
                    "`on_failure` nodes",
                    None,
                )
        elif root == "report":
            if not self.in_on_failure(site):
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `report`, which exists only in `on_failure` nodes",
                    None,
                )
        elif root == "args":
            if not site.args:
                self.report(
                    site,
                    "E022",
                    f"{site.field} reads `args`, which exists only inside an action spec "
                    "(it holds the step's rendered `with`)",
                    "read the value where it comes from, e.g. `input.<name>`",
                )
        else:
            allowed = self.allowed(site)
            self.report(
                site,
                "E022",
                f"{site.field} reads unknown name `{root}`",
                did_you_mean(root, allowed) + f"names in scope here: {', '.join(allowed)}",
            )

    def secret_key(self, site: Site) -> None:
        """E024: a key is sent to other systems and journaled verbatim (a resume must send the
        same one), so it may not carry a secret; a redacted key would change on resume."""
        self.report(
            site,
            "E024",
            f"{site.field} reads `secrets`: an idempotency key is journaled verbatim and sent "
            "to other systems",
            "build the key from the run and its input, e.g. "
            '"{{ run.id }}-charge" or "charge-{{ input.order_id }}"',
        )

    def env_read(self, site: Site, root: str, name: str | None) -> None:
        listed = self.saga.env if root == "env" else self.saga.secrets
        if name is None or name in listed:
            return
        other = "secrets" if root == "env" else "env"
        if name in (self.saga.secrets if root == "env" else self.saga.env):
            hint = f"{name} is listed under `{other}:`: read it as `{other}.{name}`"
        else:
            hint = f"add {name} to the top-level `{root}:` list"
        self.report(
            site, "E022", f"{site.field} reads `{root}.{name}`, not listed under `{root}:`", hint
        )

    def step_read(self, site: Site, target: str, chain: tuple[str | int, ...]) -> None:
        if target not in self.nodes:
            hint = None
            if self.guesses_left > 0:
                self.guesses_left -= 1
                hint = did_you_mean(target, self.nodes).strip() or None
            self.report(
                site,
                "E022",
                f"{site.field} reads `steps.{target}`, but no node has the id {target!r}",
                hint,
            )
            return
        switch = isinstance(self.nodes[target], ir.SwitchNode)
        if len(chain) > 1 and chain[1] not in STEP_FIELDS and not (switch and chain[1] == "case"):
            self.report(
                site,
                "E022",
                f"{site.field} reads `steps.{target}.{chain[1]}`: a step has only `result` "
                "and `status`",
                did_you_mean(str(chain[1]), STEP_FIELDS).strip() or None,
            )
            return
        if self.ordering(site, target) and len(chain) > 2 and chain[1] == "result":
            self.conditional(site, target, chain)
        if len(chain) > 2 and chain[1] == "result" and isinstance(chain[2], str):
            self.keep(site, self.nodes[target], chain[2], f"steps.{target}.result")

    def readers(self, site: Site) -> list[tuple[ir.AnyNode, bool]]:
        """The nodes a template runs in: (node, whether in its `compensate`)."""
        if site.action is not None:
            return list(self.users.get(site.action, []))
        if site.node is not None:
            return [(site.node, site.where == "compensate")]
        return []

    def ordering(self, site: Site, target: str) -> bool:
        """E017: a template may read only steps certain to have completed before it runs.
        Whether the read passed (and is to be checked further)."""
        if self.in_on_failure(site):
            return False
        if site.where == "output":
            return self.output_read(site, target)
        for reader, compensation in self.readers(site):
            if reader.id in self.facts.in_on_failure:
                continue
            if reader.id == target:
                if compensation:
                    continue
                self.report(
                    site,
                    "E017",
                    f"{site.field} of {reader.id!r} reads its own `steps.{target}`, which has not "
                    "completed yet",
                    "inside `compensate`, the step's result is `result`",
                )
                return False
            if not self.facts.ancestry.is_ancestor(target, reader.id):
                via = f" (through action {site.action!r})" if site.action else ""
                self.report(
                    site,
                    "E017",
                    f"{site.field}{via} reads `steps.{target}`, but {target!r} is not certain to "
                    f"have completed before {reader.id!r} starts",
                    self.ordering_hint(reader, target),
                )
                return False
        return True

    def ordering_hint(self, reader: ir.AnyNode, target: str) -> str:
        scope_of = self.facts.graph.scope_of
        if target in self.facts.in_on_failure:
            return f"{target!r} is an `on_failure` node: it runs only after the saga failed"
        if target in self.facts.in_any_branch:
            group = self.facts.in_any_branch[target]
            if self.facts.ancestry.is_ancestor(group, reader.id):
                return (
                    f"{target!r} is in a branch of the `any` group {group!r} and may not have "
                    f"run: read `steps.{group}.result` (the winning branch's last result)"
                )
        if scope_of.get(target) == scope_of.get(reader.id):
            return (
                f"add {target!r} to the `after:` of {reader.id!r}, or move {reader.id!r} below it"
            )
        return (
            "a node can read the nodes it depends on (directly or through earlier nodes and "
            "enclosing groups), never a node of another branch"
        )

    def output_read(self, site: Site, target: str) -> bool:
        if target in self.facts.in_on_failure:
            hint = f"{target!r} is an `on_failure` node: it runs only after the saga failed"
        elif target in self.facts.in_any_branch:
            group = self.facts.in_any_branch[target]
            hint = (
                f"it is in a branch of the `any` group {group!r}: read `steps.{group}.result` "
                "(the winning branch's last result)"
            )
        else:
            return True
        self.report(
            site,
            "E017",
            f"{site.field} reads `steps.{target}`, which is not certain to have run when the "
            "saga succeeds",
            hint,
        )
        return False

    def enclosing(self, node_id: str) -> list[str]:
        """The parallel groups whose branches hold `node_id`, innermost first."""
        out = []
        group = self.facts.group_of.get(node_id)
        while group is not None:
            out.append(group)
            group = self.facts.group_of.get(group)
        return out

    def conditional(self, site: Site, target: str, chain: tuple[str | int, ...]) -> None:
        """E017: a step with `when` (or inside a group with `when`) may have been skipped: its
        result is null, and reading a field of it fails. The read needs a guard: the template
        also reads `steps.<target>.status`, the read is the operand of `| default(...)` (one
        field below `result`), or the reading node's `when` (or an enclosing group's) reads
        `steps.<target>.status`."""
        status = Read("steps", (target, "status"))
        if status in self.info.reads:
            return
        read = Read("steps", chain)
        if len(chain) == 3 and read in self.info.defaulted:
            return
        skippers = [target, *self.enclosing(target)]
        candidates: list[ir.AnyNode | None] = (
            [None] if site.where == "output" else [r for r, _ in self.readers(site)]
        )
        for reader in candidates:
            if reader is not None and (
                reader.id == target or reader.id in self.facts.in_on_failure
            ):
                continue
            around = set(self.enclosing(reader.id)) if reader is not None else set()
            # A group skipped together with the reader does not count: neither runs.
            maybe = [s for s in skippers if s not in around and self.nodes[s].when is not None]
            if not maybe:
                continue
            if reader is not None and self.when_tests(reader, status):
                continue
            spelled = "steps." + ".".join(str(k) for k in chain[:3])
            why = (
                f"{target!r} has a `when`"
                if maybe[0] == target
                else f"{target!r} is inside {maybe[0]!r}, which has a `when`"
            )
            when = f"before {reader.id!r} runs" if reader is not None else "when the saga succeeds"
            test = f"steps.{target}.status == 'completed'"
            hint = f"guard the read: `{{{{ {spelled} if {test} else none }}}}`"
            if len(chain) == 3:
                hint += f", or `{{{{ {spelled} | default(none) }}}}`"
            if reader is not None:
                hint += f', or give {reader.id!r} `when: "{{{{ {test} }}}}"`'
            self.report(
                site,
                "E017",
                f"{site.field} reads `{spelled}`, but {why}: it may have been skipped (its result "
                f"is null) {when}",
                hint,
            )
            return

    def when_tests(self, reader: ir.AnyNode, status: Read) -> bool:
        """Whether the `when` of `reader` or of a group around it reads `status`."""
        for nid in (reader.id, *self.enclosing(reader.id)):
            when = self.nodes[nid].when
            if when is not None and status in analyze(when).reads:
                return True
        return False

    def keep(self, site: Site, node: ir.AnyNode, field: str, spelled: str) -> None:
        """E021: only the fields a step keeps are journaled, so only they can be read."""
        step = ir.effectful(node)
        keep = step.keep if step is not None else None
        if keep is None or field in keep:
            return
        self.report(
            site,
            "E021",
            f"{site.field} reads `{spelled}.{field}`, but {node.id!r} keeps only {', '.join(keep)}",
            did_you_mean(field, keep) + f"add {field!r} to `keep:` of {node.id!r}",
        )


def check_templates(saga: ir.Saga, facts: Facts, doc: Document) -> list[Diagnostic]:
    """E016, E017, E018, E021, E022, E024: template syntax and what each template may read."""
    return _TemplateChecker(saga, facts, doc).run()
