"""Gradescope ``results.json``: atomic writes, sanitised text, a readable summary."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def sanitize(text: str, cap: int = 8000) -> str:
    """Drop ANSI escapes and control characters; keep the head and tail when over ``cap``."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    if len(text) > cap:
        half = cap // 2
        text = f"{text[:half]}\n[... {len(text) - cap} characters cut ...]\n{text[-half:]}"
    return text


def write_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never a torn one."""
    raw = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=True).encode()
    write_bytes_atomic(path, raw, mode=0o600)  # hidden-test seeds live here: not for the worker


def write_bytes_atomic(path: Path, raw: bytes, *, mode: int) -> None:
    """Write ``raw`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def provisional(output: str) -> dict:
    return {
        "score": 0.0,
        "max_score": 0.0,
        "execution_time": 0.0,
        "output": output,
        "output_format": "text",
        "stdout_visibility": "hidden",
        "tests": [],
    }


def summary(results: dict, *, show_hidden: bool = True) -> str:
    """A terminal summary: one line per test, messages of failed tests indented below."""
    lines = []
    for test in results.get("tests", []):
        hidden = test.get("visibility") != "visible"
        if hidden and not show_hidden:
            continue
        mark = "PASS" if test.get("status") == "passed" else "FAIL"
        lines.append(
            f"[{mark}] {test.get('score', 0):g}/{test.get('max_score', 0):g}  {test.get('name')}"
            + ("  (hidden)" if hidden else "")
        )
        if test.get("status") != "passed" and test.get("output"):
            lines += ["        " + line for line in test["output"].splitlines()[:25]]
    lines.append(
        f"Total: {results.get('score', 0):g} / {results.get('max_score', 0):g}"
        f"  ({results.get('execution_time', 0):.1f} s)"
    )
    if results.get("output"):
        lines.append(results["output"])
    return "\n".join(lines)
