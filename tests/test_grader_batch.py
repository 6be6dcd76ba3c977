"""A class through ``batch`` and ``answers``: on the fixture assignment, no real course module."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_grader_cli import ENV, FIXTURE, FULL_MARKS, env_with_tmp, make_reference_submission

from autograder.batch import code_fingerprint
from replearn.contract.markers import SOLUTION_BEGIN

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def zip_folder(folder: Path, archive: Path, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return archive


@pytest.mark.slow
def test_a_batch_keeps_each_students_results_beside_the_csv_and_flags_copies(tmp_path):
    """alice/ and alice.zip both graded and kept apart; bob.zip with a manifest naming its
    student; every copy of the reference flagged; an entry without a module listed; each row
    with its seed, the assignment's maximum and the manifest's integrity."""
    subs = tmp_path / "submissions"
    alice = make_reference_submission(subs / "alice")
    zip_folder(alice, subs / "alice.zip")
    manifest = {
        "format": "replearn-submission/1",
        "assignment": "grader_fixture",
        "module": "grader_fixture",
        "student": "Bob Builder",
        "files": {},
    }
    zip_folder(alice, subs / "bob.zip", {"MANIFEST.json": json.dumps(manifest)})
    (subs / "empty").mkdir()
    (subs / "empty" / "notes.txt").write_text("nothing here\n")
    out = tmp_path / "sheets" / "grades.csv"
    done = cli("batch", str(subs), "--out", str(out), "--jobs", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"alice", "alice.zip", "bob.zip", "empty"}
    results = out.parent / "grades_results"
    for name in ("alice", "alice.zip", "bob.zip"):
        row = rows[name]
        assert float(row["score"]) == float(row["max_score"]) == FULL_MARKS, row
        assert (
            row["assignments"] == "grader_fixture"
            and float(row["grader_fixture_max"]) == FULL_MARKS
        )
        assert Path(row["results"]) == results / name / "results.json"
        data = json.loads(Path(row["results"]).read_text())
        assert data["score"] == FULL_MARKS
        assert (results / name / "grade.log").is_file()
        # every copy of the reference is flagged; bob's is a copy of alice's as well
        assert "identical to the reference" in row["flags"], row["flags"]
    graded = ("alice", "alice.zip", "bob.zip")
    assert len({rows[name]["seed"] for name in graded}) == 3, "each submission its own secret seed"
    assert rows["bob.zip"]["student"] == "Bob Builder" and rows["alice.zip"]["student"] == "alice"
    assert rows["bob.zip"]["integrity"] == "failed" and rows["alice"]["integrity"] == "absent"
    assert rows["empty"]["status"].startswith(
        "not graded: the submission holds no assignment module"
    )
    # regrading one student with the seed of the sheet gives the same result
    again = tmp_path / "again.json"
    redo = cli(
        "grade",
        str(subs / "alice.zip"),
        "--seed",
        rows["alice.zip"]["seed"],
        "--results",
        str(again),
    )
    assert redo.returncode == 0 and json.loads(again.read_text())["score"] == FULL_MARKS


def test_copies_of_each_other_are_flagged_and_the_starter_is_named(monkeypatch):
    from autograder import batch

    for name in ("AUTOGRADER_TESTS_ROOT", "AUTOGRADER_SOLUTIONS_ROOT"):
        monkeypatch.setenv(name, ENV[name])
    monkeypatch.setenv("AUTOGRADER_STARTER_ROOT", str(FIXTURE / "starter"))
    reference = (FIXTURE / "solutions" / "grader_fixture.py").read_text()
    starter = (FIXTURE / "starter" / "grader_fixture.py").read_text()
    reformatted = "# my copy\n" + reference.replace("\n\n\n", "\n\n\n\n")
    mine = starter + "\n\ndef helper():\n    return 1\n"
    entries = [
        batch.Entry(Path(n), n, modules={"grader_fixture": t})
        for n, t in (
            ("ref", reference),
            ("reformatted", reformatted),
            ("x", mine),
            ("y", mine),
            ("marked", mine + "\n# " + SOLUTION_BEGIN + "\nz = 2\n"),
            ("s1", starter),
            ("s2", starter),
        )
    ]
    flags = batch.flags(entries)
    assert flags[Path("ref")] == ["grader_fixture.py identical to the reference"]
    assert flags[Path("reformatted")] == ["grader_fixture.py the reference's code, reformatted"]
    assert flags[Path("x")] == ["grader_fixture.py same code as y"]
    assert "holds the reference's solution markers" in flags[Path("marked")][0]
    assert (
        flags[Path("s1")]
        == flags[Path("s2")]
        == ["grader_fixture.py is the starter code, unchanged"]
    )
    assert code_fingerprint("x = 1  # a\n") == code_fingerprint("x=1\n")


# ---- written answers ---------------------------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


def _notebook(answer: str, with_figure: bool = True) -> dict:
    def answer_cell(grade_id: str, text: str) -> dict:
        meta = {"nbgrader": {"solution": True, "grade": True, "grade_id": grade_id, "points": 2}}
        return {"cell_type": "markdown", "metadata": meta, "source": text}

    plot = {
        "cell_type": "code",
        "metadata": {},
        "source": "plot()",
        "execution_count": 1,
        "outputs": [
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": PNG, "text/plain": "<Figure>"},
            }
        ]
        if with_figure
        else [],
    }
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            plot,
            {"cell_type": "markdown", "metadata": {}, "source": "**Q1.** What does the plot show?"},
            answer_cell("q1_plot", answer),
            {"cell_type": "markdown", "metadata": {}, "source": "**Q2.** Why?"},
            answer_cell("q2_why", "YOUR ANSWER HERE"),
        ],
    }


def test_answers_of_a_class_question_by_question_with_the_figures(tmp_path):
    subs = tmp_path / "class"
    for name, text in (("alice", "A falling loss."), ("bob", "Nothing much.")):
        folder = subs / name
        folder.mkdir(parents=True)
        (folder / "01_x.ipynb").write_text(json.dumps(_notebook(text, with_figure=name == "alice")))
    zip_folder(subs / "bob", subs / "carol.zip")
    shutil.rmtree(subs / "bob")
    out = tmp_path / "out" / "answers.md"
    done = cli("answers", str(subs), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 submissions, 2 answers to 2 questions" in done.stdout
    text = out.read_text()
    q1, q2 = text.index("### q1_plot (2 points)"), text.index("### q2_why (2 points)")
    block = text[q1:q2]
    assert "> **Q1.** What does the plot show?" in block
    assert (
        block.index("#### alice (alice)")
        < block.index("A falling loss.")
        < block.index("#### carol (carol.zip)")
        < block.index("Nothing much.")
    )
    figure = out.parent / "answers_figures" / "alice" / "01_x-q1_plot-1.png"
    assert (
        figure.read_bytes().startswith(b"\x89PNG")
        and "answers_figures/alice/01_x-q1_plot-1.png" in block
    )
    assert text[q2:].count("_(no answer)_") == 2


def test_answers_say_what_is_wrong_when_there_is_no_notebook(tmp_path):
    subs = tmp_path / "class"
    subs.mkdir()
    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(subs / name, "w") as zf:
            zf.writestr("grader_fixture.py", "x = 1\n")
    done = cli("answers", str(subs), "--out", str(tmp_path / "answers.md"))
    assert done.returncode == 2 and "no notebook in any of the 2 submissions" in done.stderr
    assert "0 of 0" not in done.stdout + done.stderr
    single = cli("answers", str(subs / "a.zip"), "--out", str(tmp_path / "one.md"))
    assert single.returncode == 2 and "no notebook in" in single.stderr


def test_a_submission_names_its_student_in_its_manifest(tmp_path):
    from autograder.batch import identity

    (tmp_path / "MANIFEST.json").write_text(json.dumps({"student": '=HYPERLINK("x")\n Ada'}))
    assert identity(tmp_path, Path("whatever.zip")) == 'HYPERLINK("x") Ada'
    (tmp_path / "MANIFEST.json").write_text("not json")
    assert identity(tmp_path, Path("dave.zip")) == "dave"


def test_a_grader_stopped_at_the_time_limit_leaves_no_staging_folder(tmp_path):
    """The batch kills a grader that runs past --timeout; the submission it had staged (a
    student's code) is removed all the same, not left in the machine's temporary folder."""
    subs = tmp_path / "submissions"
    shutil.copytree(REPO / "tests" / "attacks" / "infinite_swallow", subs / "carol")
    out = tmp_path / "grades.csv"
    env = env_with_tmp(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "batch", str(subs), "--out", str(out)]
        + ["--timeout", "8"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = list(csv.DictReader(out.open()))
    assert row["status"] == "stopped after 8 s"
    assert list(Path(env["TMPDIR"]).iterdir()) == []
