"""Written answers for the people who grade them: one submission, or a class question by question.

    python -m autograder answers SUBMISSION|SUBMISSIONS_DIR --out answers.md

The answers are the markdown cells of the submitted notebooks that nbgrader calls manually
graded answers (``replearn.contract.notebooks.notebook_answers``). Beside each answer go the figures
its question asks about: the PNG outputs of the code cells that ran since the previous answer
(the plots the student made for it), written to ``<out name>_figures/`` next to the Markdown
file and linked from it. A folder of submissions (one folder or ``.zip`` per student, as for
``autograder batch``) gives, per notebook and per question, every student's answer in turn.
Every submission is staged with the grading rules first; a notebook that cannot be read is
named, never skipped silently, and a submission or folder without any notebook is an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder.submission import stage
from replearn.contract.notebooks import Answer, notebook_answers

PNG = b"\x89PNG\r\n\x1a\n"
MAX_FIGURES = 6  # per answer
MAX_FIGURE_BYTES = 3 * 1024**2


class NoAnswersError(ValueError):
    """Nothing to export: no notebook at all (the message says where it looked)."""


@dataclass
class Submitted:
    """One submission's answers and figures."""

    entry: str  # the file or folder name
    student: str
    answers: list[Answer] = field(default_factory=list)
    figures: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    notebooks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _png_outputs(cell: dict) -> list[bytes]:
    found = []
    for output in cell.get("outputs") or []:
        data = output.get("data") if isinstance(output, dict) else None
        raw = data.get("image/png") if isinstance(data, dict) else None
        if isinstance(raw, list):
            raw = "".join(r for r in raw if isinstance(r, str))
        if not isinstance(raw, str) or len(raw) > MAX_FIGURE_BYTES * 4 // 3 + 8:
            continue
        try:
            png = base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            continue
        if png.startswith(PNG) and len(png) <= MAX_FIGURE_BYTES:
            found.append(png)
    return found


def figures(nb: dict) -> dict[str, list[bytes]]:
    """``{grade_id: PNGs}``: the images the code cells showed since the previous answer cell."""
    by_answer: dict[str, list[bytes]] = {}
    pending: list[bytes] = []
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        grader = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        if cell.get("cell_type") == "code":
            pending += _png_outputs(cell)
        elif grader.get("solution") is True and grader.get("grade") is True:
            by_answer[str(grader.get("grade_id"))[:100]] = pending[-MAX_FIGURES:]
            pending = []
    return by_answer


def collect(source: Path) -> Submitted:
    """The answers and figures of one submission (folder or zip), staged with grading rules."""
    from autograder.batch import identity

    source = Path(source)
    scratch = Path(tempfile.mkdtemp(prefix="autograder-answers-"))
    try:
        staged = stage(source, scratch / "submission", set())
        found = Submitted(source.name, identity(staged.root, source))
        for book in sorted(staged.root.rglob("*.ipynb")):
            rel = book.relative_to(staged.root).as_posix()
            try:
                nb = json.loads(book.read_bytes())
                if not isinstance(nb, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as error:
                found.problems.append(f"{rel} could not be read as a notebook ({error})")
                continue
            found.notebooks.append(rel)
            found.answers += notebook_answers(nb, rel)
            for grade_id, pngs in figures(nb).items():
                found.figures[(rel, grade_id)] = pngs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found


def is_class_folder(path: Path) -> bool:
    """A folder of submissions: it holds folders or zips and no notebook, module or manifest."""
    path = Path(path)
    if not path.is_dir():
        return False
    top = [p for p in path.iterdir() if not p.name.startswith(".")]
    own = [p for p in top if p.suffix in (".ipynb", ".py") or p.name == "MANIFEST.json"]
    return not own and any(p.is_dir() or p.suffix.lower() == ".zip" for p in top)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _figure_links(sub: Submitted, notebook: str, grade_id: str, out: Path) -> list[str]:
    """Write the figures of one answer beside ``out``; their Markdown links."""
    pngs = sub.figures.get((notebook, grade_id), [])
    folder = out.with_name(out.stem + "_figures") / _UNSAFE.sub("_", sub.entry)
    links = []
    for k, png in enumerate(pngs, start=1):
        name = f"{_UNSAFE.sub('_', Path(notebook).stem)}-{_UNSAFE.sub('_', grade_id)}-{k}.png"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
        links.append(
            f"![figure {k} before this answer]({folder.relative_to(out.parent).as_posix()}/{name})"
        )
    return links


def _question_lines(answer: Answer) -> list[str]:
    plural = "" if answer.points == 1 else "s"
    points = "" if answer.points is None else f" ({answer.points:g} point{plural})"
    lines = [f"### {answer.grade_id}{points}", ""]
    if answer.question:
        lines += ["> " + line if line else ">" for line in answer.question.splitlines()] + [""]
    return lines


def write_answers(source: Path, out: Path) -> str:
    """Write the answers of ``source`` (a submission or a folder of them) to ``out``.

    Returns a one-line summary. Raises :class:`NoAnswersError` when there is no notebook.
    """
    from autograder.results import sanitize

    source, out = Path(source), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out.with_name(out.stem + "_figures"), ignore_errors=True)
    if is_class_folder(source):
        from autograder.batch import entries_of

        subs = [collect(entry) for entry in entries_of(source)]
    else:
        subs = [collect(source)]
    if not any(s.notebooks for s in subs):
        where = f"any of the {len(subs)} submissions in {source}" if len(subs) > 1 else str(source)
        raise NoAnswersError(
            f"no notebook in {where}: the written answers live in the executed notebooks that "
            "`python -m replearn.submit` packs (a folder of submissions holds one folder or .zip "
            "per student)"
            + (
                "; " + "; ".join(p for s in subs for p in s.problems[:3])
                if any(s.problems for s in subs)
                else ""
            )
        )
    if len(subs) == 1:
        text = _one(subs[0], out)
        found = subs[0].answers
        summary = (
            f"wrote {out}: {sum(bool(a.text) for a in found)} of {len(found)} answer cells answered"
        )
    else:
        text = _class(subs, source, out)
        answered = sum(bool(a.text) for s in subs for a in s.answers)
        summary = (
            f"wrote {out}: {len(subs)} submissions, {answered} answers to "
            f"{len({(a.notebook, a.grade_id) for s in subs for a in s.answers})} questions"
        )
    out.write_text(sanitize(text, 10**8), encoding="utf-8")
    return summary


def _one(sub: Submitted, out: Path) -> str:
    lines = [f"# Written answers: {sub.entry}", ""]
    lines += [f"> **{problem}**" for problem in sub.problems]
    current = None
    for answer in sub.answers:
        if answer.notebook != current:
            current = answer.notebook
            lines += [f"## {current}", ""]
        lines += _question_lines(answer)
        lines += _figure_links(sub, answer.notebook, answer.grade_id, out)
        lines += [answer.text if answer.text else "_(no answer)_", ""]
    return "\n".join(lines)


def _class(subs: list[Submitted], source: Path, out: Path) -> str:
    lines = [f"# Written answers: {source.name} ({len(subs)} submissions)", ""]
    for sub in subs:
        lines += [f"> **{sub.entry}: {problem}**" for problem in sub.problems]
        if not sub.notebooks:
            lines.append(f"> **{sub.entry} ({sub.student}): no notebook submitted**")
    order: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], dict[str, Answer]] = {}
    for sub in subs:
        for answer in sub.answers:
            key = (Path(answer.notebook).name, answer.grade_id)
            if key not in by_key:
                order.append(key)
                by_key[key] = {}
            by_key[key][sub.entry] = answer
    current = None
    for key in sorted(order, key=lambda k: (k[0], order.index(k))):
        notebook, _ = key
        if notebook != current:
            current = notebook
            lines += ["", f"## {notebook}", ""]
        answers = by_key[key]
        # the question as most students' notebooks have it (a student may have edited theirs)
        question = Counter(a.question for a in answers.values()).most_common(1)[0][0]
        first = next(iter(answers.values()))
        lines += _question_lines(Answer(first.notebook, first.grade_id, first.points, question, ""))
        for sub in subs:
            answer = answers.get(sub.entry)
            lines += [f"#### {sub.student} ({sub.entry})", ""]
            if answer is None:
                lines += ["_(question not in this submission's notebook)_", ""]
                continue
            lines += _figure_links(sub, answer.notebook, answer.grade_id, out)
            lines += [answer.text if answer.text else "_(no answer)_", ""]
    return "\n".join(lines)
