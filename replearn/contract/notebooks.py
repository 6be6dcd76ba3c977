"""Executed notebooks as evidence: run records, the module a notebook sets up, written answers.

A kernel cannot write its own notebook's metadata, so ``replearn.notebook.setup()`` and
``Session.finish()`` leave **run records** in the outputs of their cells, as a ``display_data``
bundle with a second mimetype, :data:`RUN_MIMETYPE` (``{event: setup|finish, run_id, module,
impl, module_path, module_sha256, preset, device, replearn, torch, time}``); the saved notebook
keeps them. The packager (``replearn.submit``) refuses a notebook whose latest run did not import
the submitted module's bytes or did not finish, and the grader (``autograder.manifest.verify``)
checks the same with :func:`check_notebook_run` on the staged files. Written answers are
nbgrader's "manually graded answer" cells (:func:`notebook_answers`): the packager warns about
empty ones, the grader exports them for the people who grade them.

Everything here reads student data: anything malformed is skipped or reported, never trusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replearn.contract.markers import SOLUTION_MARKERS

# Mimetype of the run records that the notebook set-up cell and Session.finish() display.
RUN_MIMETYPE = "application/vnd.replearn.run+json"
MAX_NOTEBOOK_BYTES = 200 * 1024**2
UNANSWERED = ("YOUR ANSWER HERE", "_Your answer here._")  # nbgrader's release stub, the source's
MAX_ANSWER_CHARS = 20_000


# --------------------------------------------------------------------------------------------
# Run records
# --------------------------------------------------------------------------------------------


def read_notebook(path: Path, *, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """Parse an ``.ipynb`` file (size-capped); raises ``ValueError`` with a readable reason."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size} bytes, over the {max_bytes} byte limit")
    try:
        nb = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path.name} is not a notebook (not valid JSON)") from None
    if type(nb) is not dict or type(nb.get("cells")) is not list:
        raise ValueError(f"{path.name} is not a notebook (no list of cells)")
    return nb


def _str(value: Any, limit: int = 4096) -> str:
    return value[:limit] if isinstance(value, str) else ""


def run_records(nb: dict) -> list[dict]:
    """The run records of a parsed notebook, in execution order (then cell order).

    Each is a dict with ``event`` ("setup" or "finish"), ``run_id``, ``module``, ``impl``,
    ``module_sha256``, ``preset``, ``time`` and ``execution_count`` (of the cell showing it).
    Anything malformed is skipped: the notebook is student data.
    """
    found: list[tuple[int, int, dict]] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if type(cell) is not dict or cell.get("cell_type") != "code":
            continue
        count = cell.get("execution_count")
        count = count if type(count) is int else -1
        outputs = cell.get("outputs")
        for output in outputs if type(outputs) is list else []:
            if type(output) is not dict:
                continue
            # the data bundle, else the output's metadata (both written by replearn.notebook)
            data, meta = output.get("data"), output.get("metadata")
            record = data.get(RUN_MIMETYPE) if type(data) is dict else None
            if record is None and type(meta) is dict:
                record = meta.get(RUN_MIMETYPE)
            if type(record) is not dict or record.get("event") not in ("setup", "finish"):
                continue
            clean = {
                key: _str(record.get(key))
                for key in ("event", "run_id", "module", "impl", "module_sha256", "preset", "time")
            }
            clean["module_path"] = _str(record.get("module_path"))
            clean["execution_count"] = count
            found.append((count, index, clean))
    return [record for _, _, record in sorted(found, key=lambda item: (item[0], item[1]))]


def executed_code_cells(nb: dict) -> int:
    """How many code cells carry an execution count (0 for a notebook never run)."""
    cells = [c for c in nb.get("cells", []) if type(c) is dict and c.get("cell_type") == "code"]
    return sum(type(c.get("execution_count")) is int for c in cells)


def last_run(nb: dict) -> tuple[dict | None, dict | None]:
    """The latest set-up record and the finish record of the same run (None when missing)."""
    records = run_records(nb)
    setups = [r for r in records if r["event"] == "setup"]
    if not setups:
        return None, None
    setup = setups[-1]
    finishes = [
        r
        for r in records
        if r["event"] == "finish" and r["run_id"] and r["run_id"] == setup["run_id"]
    ]
    return setup, (finishes[-1] if finishes else None)


def notebook_module(nb: dict) -> str | None:
    """The module named by the notebook's ``notebook.setup("<module>")`` call (first 3 code cells)."""
    code = [c for c in nb.get("cells", []) if type(c) is dict and c.get("cell_type") == "code"]
    for cell in code[:3]:
        source = cell.get("source")
        text = "".join(source) if type(source) is list else _str(source, 100_000)
        match = re.search(r"notebook\.setup\(\s*[\"'](\w+)[\"']", text)
        if match:
            return match.group(1)
    return None


def check_notebook_run(nb: dict, name: str, module: str, module_sha256: str) -> list[str]:
    """Problems that make ``nb``'s outputs not evidence of running ``module`` with that hash.

    Empty when the notebook's latest run imported the student's implementation of ``module``
    whose bytes hash to ``module_sha256`` and ran to ``S.finish()``.
    """
    if executed_code_cells(nb) == 0:
        return [f"{name} was never executed (no cell has run): run it top to bottom and save it"]
    setup, finish = last_run(nb)
    if setup is None:
        return [
            f"{name} has no output of its set-up cell (notebook.setup): run the whole notebook "
            "(Run All) with the course package and save it"
        ]
    problems = []
    if setup["module"] != module:
        problems.append(f"{name} ran notebook.setup({setup['module']!r}), not {module!r}")
    if setup["impl"] != "starter":
        problems.append(
            f"{name} last ran against the {setup['impl'] or 'unknown'} implementation "
            f"({setup['module_path'] or 'unknown file'}), not your own module: unset "
            "REPLEARN_IMPL, run it again and save it"
        )
    elif setup["module_sha256"] != module_sha256:
        problems.append(
            f"{name}'s outputs do not come from the submitted {module}.py: the last run imported "
            f"a file with sha256 {setup['module_sha256'][:12] or '?'}..., the submitted one has "
            f"{module_sha256[:12]}... (edited after the run, or another copy); run the notebook "
            "again (Run All) and save it"
        )
    if finish is None:
        problems.append(
            f"{name} did not run to the end of its last run (no output of S.finish()): run all "
            "cells and save the notebook"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Written answers
# --------------------------------------------------------------------------------------------


@dataclass
class Answer:
    notebook: str
    grade_id: str
    points: float | None
    question: str  # the markdown cell just above the answer cell
    text: str  # the student's answer, markers removed ("" when unanswered)


def _cell_text(cell: dict) -> str:
    source = cell.get("source")
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _answer_text(raw: str) -> str:
    lines = [line for line in raw.splitlines() if line.strip() not in SOLUTION_MARKERS]
    text = "\n".join(lines).strip()
    return "" if text in UNANSWERED or not text else text[:MAX_ANSWER_CHARS]


def notebook_answers(nb: dict, name: str) -> list[Answer]:
    """The manually graded markdown answer cells of a parsed notebook, in order.

    An answer cell is what nbgrader calls a "Manually graded answer": markdown with
    ``metadata.nbgrader`` ``solution`` and ``grade`` both true.
    """
    answers: list[Answer] = []
    question = ""
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata")
        grader = meta.get("nbgrader") if isinstance(meta, dict) else None
        is_answer = (
            cell.get("cell_type") == "markdown"
            and isinstance(grader, dict)
            and grader.get("solution") is True
            and grader.get("grade") is True
        )
        if is_answer:
            points = grader.get("points")
            answers.append(
                Answer(
                    notebook=name,
                    grade_id=str(grader.get("grade_id") or f"answer {len(answers) + 1}")[:100],
                    points=float(points) if type(points) in (int, float) else None,
                    question=question,
                    text=_answer_text(_cell_text(cell)),
                )
            )
        elif cell.get("cell_type") == "markdown":
            question = _cell_text(cell).strip()[:MAX_ANSWER_CHARS]
    return answers
