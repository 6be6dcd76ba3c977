"""Banned-API detection: the list lives once in ``solutions/<module>.py`` as ``BANNED_APIS``.

This is policy detection, not security: the static scan here runs in the parent on the student
source; ``autograder.worker`` records calls at run time. Either finding zeroes the tests of the
function concerned and says why.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


def read_banned(reference_path: Path) -> dict[str, list[str]]:
    """``BANNED_APIS`` from a reference module, read with ``ast.literal_eval`` (never imported)."""
    if not Path(reference_path).exists():
        return {}
    tree = ast.parse(Path(reference_path).read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "BANNED_APIS" for t in targets):
            value = ast.literal_eval(node.value)
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in value.items()
            ):
                raise ValueError(f"BANNED_APIS in {reference_path} must map str -> list of str")
            return {k: [str(a) for a in v] for k, v in value.items()}
    return {}


@dataclass(frozen=True)
class Finding:
    function: str
    api: str
    line: int

    def message(self) -> str:
        return (
            f"{self.function} uses {self.api} (line {self.line}), which this assignment "
            f"forbids; write it with basic tensor operations instead. Tests of "
            f"{self.function} score 0."
        )


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin for module-level and function-level imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call) and _is_getattr(node):
            parts.append(node.args[1].value)
            node = node.args[0]
        else:
            break
    if not isinstance(node, ast.Name):
        return None
    base = aliases.get(node.id, node.id)
    return ".".join([base, *reversed(parts)])


def _is_getattr(node: ast.Call) -> bool:
    return (
        isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    )


def _equivalent(dotted: str, api: str) -> bool:
    """``torch.nn.functional.x`` also matches ``torch.nn.x`` re-exports and vice versa."""
    if dotted == api:
        return True
    norm = lambda s: s.replace("torch.nn.modules.loss.", "torch.nn.").replace(  # noqa: E731
        "torch.nn.modules.", "torch.nn."
    )
    return norm(dotted) == norm(api)


def scan(source: str, banned: dict[str, list[str]]) -> list[Finding]:
    """Find banned APIs referenced inside the functions (or ``Class.method``) they are banned in."""
    if not banned:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the import fails in the worker with a readable message
    aliases = _aliases(tree)
    findings: list[Finding] = []
    defs: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defs[f"{node.name}.{sub.name}"] = sub
            defs[node.name] = node
    for function, apis in banned.items():
        body = defs.get(function)
        if body is None:
            continue
        for node in ast.walk(body):
            if isinstance(node, (ast.Attribute, ast.Name)) or (
                isinstance(node, ast.Call) and _is_getattr(node)
            ):
                dotted = _dotted(node, aliases)
                if dotted is None:
                    continue
                for api in apis:
                    if _equivalent(dotted, api):
                        findings.append(Finding(function, api, getattr(node, "lineno", 0)))
    unique = {(f.function, f.api): f for f in sorted(findings, key=lambda f: -f.line)}
    return sorted(unique.values(), key=lambda f: (f.function, f.line))
