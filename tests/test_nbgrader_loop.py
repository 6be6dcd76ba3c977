"""The whole nbgrader loop, for real, in a temporary course folder.

generate_assignment -> submissions -> autograde -> a manual grade -> generate_feedback -> the CSV
that joins nbgrader's gradebook with the trusted grader's results.json. It runs on a small
notebook built here (one solution cell, one autograder test cell with a hidden part, one
free-response cell) and, when the course notebooks exist, on the first of them too.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from instructor.nbgrader import bridge
from instructor.nbgrader.nbgrader_config import CODE_STUB, TEXT_STUB
from replearn.contract.markers import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END

REPO = Path(__file__).resolve().parent.parent
REAL_NOTEBOOKS = sorted((REPO / "assignments").glob("*.ipynb"))
HIDDEN_LINE = "assert squares(5)[-1] == 25  # hidden_check_7f3a"
LOOP_TIMEOUT_S = 300  # per nbgrader step; the steps take seconds


def nbgrader_meta(grade_id: str, *, solution: bool, grade: bool, points: float | None = None):
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "schema_version": 3}
    meta["locked"] = grade and not solution
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def course_test_notebook() -> nbformat.NotebookNode:
    """A three-question notebook in the course's conventions (test data, fixed cell ids)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cells = [
        new_markdown_cell("# Squares\n\nImplement `squares`, then answer the question."),
        new_code_cell(
            "def squares(n):\n"
            '    """The squares 1, 4, ..., n**2 as a list."""\n'
            f"    {SOLUTION_BEGIN}\n"
            "    return [i**2 for i in range(1, n + 1)]\n"
            f"    {SOLUTION_END}",
            metadata=nbgrader_meta("squares", solution=True, grade=False),
        ),
        new_code_cell(
            f"assert squares(3) == [1, 4, 9]\n{HIDDEN_BEGIN}\n{HIDDEN_LINE}\n{HIDDEN_END}",
            metadata=nbgrader_meta("test_squares", solution=False, grade=True, points=3),
        ),
        new_markdown_cell(
            f"Why does `squares` start at 1?\n\n{SOLUTION_BEGIN}\n"
            f"Because the task says so.\n{SOLUTION_END}",
            metadata=nbgrader_meta("why_one", solution=True, grade=True, points=2),
        ),
    ]
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index}"
    nb.cells = cells
    return nb


def filled_in(release: nbformat.NotebookNode, source: nbformat.NotebookNode):
    """The release notebook with every solution cell answered as the source notebook does."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells if is_solution(c)}
    submitted = nbformat.from_dict(json.loads(nbformat.writes(release)))
    for cell in submitted.cells:
        if is_solution(cell):
            lines = answers[cell.metadata["nbgrader"]["grade_id"]].split("\n")
            marker = (SOLUTION_BEGIN, SOLUTION_END)
            cell.source = "\n".join(x for x in lines if not x.strip().startswith(marker))
    return submitted


def visible_text(page: Path) -> str:
    """The text a reader of an HTML page sees (no tags, styles or scripts)."""
    text = re.sub(r"<(style|script)\b.*?</\1>", "", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def points(nb, *, solution: bool) -> float:
    """Total points of the grade cells that are (solution=True) or are not answers."""
    return sum(
        c.metadata["nbgrader"].get("points", 0)
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade") and is_solution(c) == solution
    )


def write_results(folder: Path, student: str, assignment: str, scores: list[tuple[float, float]]):
    """A Gradescope results.json of the trusted grader (test data: per-test score, max)."""
    tests = [
        {"name": f"test_{i}", "score": s, "max_score": m, "visibility": "visible", "output": ""}
        for i, (s, m) in enumerate(scores)
    ]
    path = folder / student / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"score": sum(s for s, _ in scores), "assignment": assignment, "tests": tests}
    path.write_text(json.dumps(payload))


@pytest.mark.slow
def test_the_whole_loop_on_a_course_notebook(tmp_path):
    source_path = tmp_path / "01_squares.ipynb"
    source = course_test_notebook()
    nbformat.write(source, source_path)
    course = tmp_path / "course"

    # generate_assignment: the solution becomes the stub; the question stays manually graded.
    assert bridge.setup_course(course, [source_path]) == ["01_squares"]
    (release_path,) = bridge.generate_assignment(course, "01_squares", timeout=LOOP_TIMEOUT_S)
    release = nbformat.read(release_path, as_version=4)
    text = release_path.read_text()
    assert "i**2" not in text and "Because the task says so" not in text
    assert SOLUTION_BEGIN not in text and "hidden_check_7f3a" not in text
    code, test, question = release.cells[1], release.cells[2], release.cells[3]
    assert code.source.splitlines()[-1] == "    " + CODE_STUB
    assert test.source == "assert squares(3) == [1, 4, 9]"
    assert question.source.endswith(TEXT_STUB)
    assert question.metadata["nbgrader"] == {
        **question.metadata["nbgrader"],
        **{"solution": True, "grade": True, "points": 2, "grade_id": "why_one"},
    }

    # Submissions: alice answers as the solution does; bob's squares only knows n <= 3.
    bridge.submit(
        course,
        "01_squares",
        "alice",
        {"01_squares.ipynb": nbformat.writes(filled_in(release, source))},
    )
    wrong = filled_in(release, source)
    wrong.cells[1].source = "def squares(n):\n    return [1, 4, 9][:n]"
    bridge.submit(course, "01_squares", "bob", {"01_squares.ipynb": nbformat.writes(wrong)})

    bridge.autograde(course, "01_squares", timeout=LOOP_TIMEOUT_S)
    grades = bridge.read_gradebook(course / "gradebook.db")
    alice, bob = grades[("alice", "squares")], grades[("bob", "squares")]
    assert (alice.autograded_score, alice.manual_score, alice.max_score) == (3.0, 0.0, 5.0)
    assert alice.needs_manual_grade  # the free-response answer waits for a person
    assert bob.autograded_score == 0.0  # the hidden part of the test cell failed

    # A person grades alice's answer (what formgrader does), then the feedback.
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "replearn") as gb:
        answer = gb.find_grade("why_one", "01_squares", "01_squares", "alice")
        answer.manual_score, answer.needs_manual_grade = 1.5, False
        gb.db.commit()
    feedback = bridge.generate_feedback(course, "01_squares", timeout=LOOP_TIMEOUT_S)
    assert [p.relative_to(course / "feedback").as_posix() for p in feedback] == [
        "alice/01_squares/01_squares.html",
        "bob/01_squares/01_squares.html",
    ]
    alice_page, bob_page = (visible_text(page) for page in feedback)
    assert "01_squares (Score: 4.5 / 5.0)" in alice_page
    assert "Test cell (Score: 3.0 / 3.0)" in alice_page
    for page in (alice_page, bob_page):
        assert "assert squares(3) == [1, 4, 9]" in page  # the public part of the test cell
        assert "hidden_check_7f3a" not in page and "squares(5)" not in page
    assert "Test cell (Score: 0.0 / 3.0)" in bob_page
    assert "AssertionError (hidden test: its source is not shown)" in bob_page
    # nbgrader's autograded copy still holds the hidden test: only the feedback drops it.
    assert (
        "hidden_check_7f3a" in (course / "autograded/bob/01_squares/01_squares.ipynb").read_text()
    )

    # The CSV: module scores of the trusted grader beside nbgrader's notebook scores.
    results = tmp_path / "results"
    write_results(results, "alice", "squares", [(2.0, 2.0), (1.0, 3.0)])
    write_results(results, "carol", "squares", [(3.0, 3.0)])  # no notebook handed in
    out = tmp_path / "grades.csv"
    assert (
        bridge.main(
            [
                "export",
                "--gradebook",
                str(course / "gradebook.db"),
                "--results-dir",
                str(results),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = {row["student_id"]: row for row in csv.DictReader(out.open())}
    assert list(rows) == ["alice", "bob", "carol"]
    assert rows["alice"] == {
        "student_id": "alice",
        "assignment": "squares",
        "nbgrader_assignment": "01_squares",
        "module_score": "3",
        "module_max_score": "5",
        "notebook_autograded_score": "3",
        "notebook_manual_score": "1.5",
        "notebook_score": "4.5",
        "notebook_max_score": "5",
        "notebook_needs_manual_grade": "no",
        "total_score": "7.5",
        "total_max_score": "10",
    }
    assert rows["bob"]["module_score"] == "" and rows["bob"]["notebook_score"] == "0"
    assert rows["carol"]["notebook_score"] == "" and rows["carol"]["total_score"] == "3"


@pytest.mark.slow
@pytest.mark.skipif(not REAL_NOTEBOOKS, reason="no assignments/*.ipynb yet")
def test_the_loop_on_the_first_course_notebook(tmp_path):
    """The first real notebook releases, and a submission that answers as the solution does
    gets every autograded point (notebooks run on the smoke preset against solutions/)."""
    source_path = REAL_NOTEBOOKS[0]
    source = nbformat.read(source_path, as_version=4)
    course = tmp_path / "course"
    (ident,) = bridge.setup_course(course, [source_path])
    (release_path,) = bridge.generate_assignment(course, ident, timeout=LOOP_TIMEOUT_S)
    release = nbformat.read(release_path, as_version=4)
    assert SOLUTION_BEGIN not in release_path.read_text()
    for before, after in zip(source.cells, release.cells):
        if is_solution(before) and before.cell_type == "code":
            assert CODE_STUB in after.source, f"cell {before.id}: no stub in the release"
        if is_solution(before) and before.metadata["nbgrader"].get("grade"):
            assert after.cell_type == before.cell_type  # still a manually graded answer

    notebook_name = release_path.name
    submission = nbformat.writes(filled_in(release, source))
    bridge.submit(course, ident, "alice", {notebook_name: submission})
    bridge.autograde(
        course, ident, "alice", preset="smoke", impl="solution", timeout=2 * LOOP_TIMEOUT_S
    )
    score = bridge.read_gradebook(course / "gradebook.db")[("alice", bridge.course_name(ident))]
    assert score.autograded_score == points(source, solution=False)
    executed = nbformat.read(course / "autograded" / "alice" / ident / notebook_name, as_version=4)
    errors = [
        (index, output.ename, output.evalue[:200])
        for index, cell in enumerate(executed.cells)
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors, f"a solution-filled submission raised in cells {errors}"
    (page,) = bridge.generate_feedback(course, ident, "alice", timeout=LOOP_TIMEOUT_S)
    shown = visible_text(page)
    hidden = re.findall(
        rf"{re.escape(HIDDEN_BEGIN)}\n(.*?)\n{re.escape(HIDDEN_END)}",
        "\n".join(c.source for c in source.cells),
        re.S,
    )
    secret = [line.strip() for block in hidden for line in block.splitlines() if line.strip()]
    assert not [line for line in secret if line in shown]


def module_notebook() -> nbformat.NotebookNode:
    """A notebook that imports the student's module, as the course notebooks do (test data)."""
    nb = course_test_notebook()
    cells = [
        new_markdown_cell("# Squares from your module"),
        new_code_cell("from replearn import impl\n\nm = impl.load('squares_mod')\nprint(m.who())"),
        new_code_cell(
            f"assert m.squares(3) == [1, 4, 9]\n{HIDDEN_BEGIN}\n{HIDDEN_LINE.replace('squares', 'm.squares')}\n{HIDDEN_END}",
            metadata=nbgrader_meta("test_module", solution=False, grade=True, points=3),
        ),
    ]
    for index, cell in enumerate(cells):
        cell.id = f"mod-{index}"
    nb.cells = cells
    return nb


SQUARES_MODULE = """def who():
    return "{who}"


def squares(n):
    {body}
"""


@pytest.mark.slow
def test_autograde_runs_the_module_each_student_submitted_beside_the_notebook(
    tmp_path, monkeypatch
):
    """collect -> autograde -> feedback -> export, with the module next to each notebook: every
    student's outputs and score come from their own module, never from the course's stubs."""
    instructor = tmp_path / "instructor"  # the course folder, whose starter_code/ holds the stub
    (instructor / "starter_code").mkdir(parents=True)
    (instructor / "starter_code" / "squares_mod.py").write_text(
        SQUARES_MODULE.format(
            who="the course's stub", body='raise NotImplementedError("write squares")'
        )
    )
    monkeypatch.setenv("REPLEARN_ROOT", str(instructor))
    monkeypatch.delenv("REPLEARN_STUDENT_DIR", raising=False)
    source_path = tmp_path / "02_modsquares.ipynb"
    nbformat.write(module_notebook(), source_path)
    course = tmp_path / "course"
    bridge.setup_course(course, [source_path])
    (release_path,) = bridge.generate_assignment(course, "02_modsquares", timeout=LOOP_TIMEOUT_S)

    # the class's submissions, as `replearn.submit` packs them: a zip and a folder
    subs = tmp_path / "submissions"
    (subs / "bob").mkdir(parents=True)
    with zipfile.ZipFile(subs / "alice.zip", "w") as zf:
        zf.write(release_path, release_path.name)
        zf.writestr(
            "squares_mod.py",
            SQUARES_MODULE.format(
                who="alice's module", body="return [i**2 for i in range(1, n + 1)]"
            ),
        )
    shutil.copy(release_path, subs / "bob" / release_path.name)
    (subs / "bob" / "squares_mod.py").write_text(
        SQUARES_MODULE.format(who="bob's module", body="return [1, 4, 9][:n]")
    )
    assert bridge.main(["collect", "--course", str(course), str(subs)]) == 0
    assert (course / "submitted" / "alice" / "02_modsquares" / "squares_mod.py").is_file()

    bridge.autograde(course, "02_modsquares", timeout=LOOP_TIMEOUT_S)
    grades = bridge.read_gradebook(course / "gradebook.db")
    assert grades[("alice", "modsquares")].autograded_score == 3.0
    assert grades[("bob", "modsquares")].autograded_score == 0.0  # the hidden part failed
    for student, who in (("alice", "alice's module"), ("bob", "bob's module")):
        executed = (
            course / "autograded" / student / "02_modsquares" / "02_modsquares.ipynb"
        ).read_text()
        assert who in executed and "the course's stub" not in executed
        assert "NotImplementedError" not in executed
    pages = bridge.generate_feedback(course, "02_modsquares", timeout=LOOP_TIMEOUT_S)
    alice_page = visible_text(pages[0])
    assert "alice's module" in alice_page and "Score: 3.0 / 3.0" in alice_page

    sheet = tmp_path / "grades.csv"  # the module scores as `autograder batch` writes them
    sheet.write_text(
        "submission,student,assignments,modsquares,modsquares_max,results\n"
        "alice.zip,alice,modsquares,7,10,r/alice.json\nbob,bob,modsquares,4,10,r/bob.json\n"
    )
    out = tmp_path / "combined.csv"
    assert (
        bridge.main(
            [
                "export",
                "--gradebook",
                str(course / "gradebook.db"),
                "--grades",
                str(sheet),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = {row["student_id"]: row for row in csv.DictReader(out.open())}
    assert (rows["alice"]["module_score"], rows["alice"]["notebook_autograded_score"]) == ("7", "3")
    assert (rows["bob"]["module_score"], rows["bob"]["total_score"]) == ("4", "4")
