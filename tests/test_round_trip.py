"""The student's round trip: set-up cell, self-check, packaging, validation, grading, answers.

The sample completed submission is the reference of the grader's fixture assignment, copied into
a temporary course folder as the student's ``starter_code/grader_fixture.py``, with a notebook
whose first cell is the real set-up cell. The fixture's tests are copied too, with a
``submission.json`` that asks for the trained classifier's weights as an artefact.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import cli, manifest, submission
from replearn import notebook, submit
from replearn.contract import files as contract_files
from replearn.contract import manifest as contract_manifest
from replearn.contract import notebooks

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "grader_assignment"
MODULE = "grader_fixture"
BOOK = "00_grader_fixture.ipynb"
FULL_MARKS = 14.0
ANSWER = "Subtracting the maximum keeps exp from overflowing."
TRAIN_CELL = """import torch
from replearn.submit import save_weights

x, y = S.impl.make_blobs(500, seed=1)  # [N, D], [N]
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.5)
for _ in range(200):
    opt.zero_grad()
    S.impl.softmax_regression_loss(model(x), y).backward()
    opt.step()
save_weights(model, "classifier.safetensors")"""
ANSWER_META = {
    "nbgrader": {
        "grade": True,
        "solution": True,
        "grade_id": "q1_overflow",
        "points": 1,
        "schema_version": 3,
        "locked": False,
    }
}


# --------------------------------------------------------------------------------------------
# A course folder with a completed submission
# --------------------------------------------------------------------------------------------


@pytest.fixture
def grader_env(tmp_path, monkeypatch):
    """The fixture's tests (plus an artefact declaration) and reference, for grader and packager."""
    tests = tmp_path / "grader_tests"
    shutil.copytree(FIXTURE / "tests", tests)
    spec = {"artefacts": {"classifier.safetensors": {"max_bytes": 1_000_000, "what": "weights"}}}
    (tests / MODULE / "submission.json").write_text(json.dumps(spec))
    env = {
        "AUTOGRADER_TESTS_ROOT": str(tests),
        "AUTOGRADER_SOLUTIONS_ROOT": str(FIXTURE / "solutions"),
        "OMP_NUM_THREADS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("REPLEARN_IMPL", "REPLEARN_ROOT", "REPLEARN_STUDENT_DIR"):
        monkeypatch.delenv(key, raising=False)
    return {**os.environ, **env}


def source_notebook(check_part: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(notebook.setup_cell_source(MODULE)),
        nbformat.v4.new_code_cell(TRAIN_CELL),
        *([nbformat.v4.new_code_cell(f"S.check({check_part!r})")] if check_part else []),
        nbformat.v4.new_markdown_cell("**Question 1 (1 point).** Why subtract the maximum?"),
        nbformat.v4.new_markdown_cell("YOUR ANSWER HERE", metadata=ANSWER_META),
        nbformat.v4.new_code_cell("S.finish()"),
    ]
    return nb


def make_course(folder: Path) -> Path:
    """``starter_code/`` holding the completed module (``solutions/``, the same, for
    self-learners), ``assignments/`` its notebook, not yet run."""
    for sub in ("starter_code", "solutions", "assignments"):
        (folder / sub).mkdir(parents=True)
    shutil.copy(FIXTURE / "solutions" / f"{MODULE}.py", folder / "starter_code")
    shutil.copy(FIXTURE / "solutions" / f"{MODULE}.py", folder / "solutions")
    nbformat.write(source_notebook(), folder / "assignments" / BOOK)
    return folder


_TRAINED: list[bytes] = []


def fake_run(course: Path, *, impl: str = "starter", finished: bool = True, answer: str = ANSWER):
    """Execute the notebook's bookkeeping in-process: the records ``setup()``/``finish()`` make.

    The kernel-backed round trip below proves that a real run leaves the same records.
    """
    session = notebook.setup(MODULE, preset="smoke", impl=impl, root=course)
    weights = course / "assignments" / "classifier.safetensors"
    if not _TRAINED:  # the notebook's training cell, run once per test session
        exec(TRAIN_CELL.replace('"classifier.safetensors"', repr(str(weights))), {"S": session})
        _TRAINED.append(weights.read_bytes())
    weights.write_bytes(_TRAINED[0])
    nb = nbformat.read(course / "assignments" / BOOK, as_version=4)
    setup_cell, finish_cell = nb.cells[0], nb.cells[-1]
    setup_cell.execution_count, finish_cell.execution_count = 1, 3
    nb.cells[1].execution_count = 2
    record = {"output_type": "display_data", "metadata": {}}
    setup_cell.outputs = [
        nbformat.from_dict(
            {**record, "data": {notebooks.RUN_MIMETYPE: session._run_record("setup")}}
        )
    ]
    finish_cell.outputs = (
        [
            nbformat.from_dict(
                {**record, "data": {notebooks.RUN_MIMETYPE: session._run_record("finish")}}
            )
        ]
        if finished
        else []
    )
    nb.cells[-2].source = answer
    nbformat.write(nb, course / "assignments" / BOOK)
    return session


@pytest.fixture
def course(tmp_path, grader_env, monkeypatch):
    folder = make_course(tmp_path / "course")
    monkeypatch.chdir(folder)
    fake_run(folder)
    return folder


def tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "submissions" not in p.parts
    }


def refused(course: Path, *words: str, **kwargs) -> str:
    """Package must refuse, naming ``words``, and leave the course folder exactly as it was."""
    before = tree_state(course)
    with pytest.raises(submit.SubmissionError) as info:
        submit.package(MODULE, root=course, out=course.parent / "out.zip", **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert not (course.parent / "out.zip").exists(), "a refused submission writes no zip"
    assert tree_state(course) == before, "packaging changed the student's files"
    return message


def run(args: list[str], env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


# --------------------------------------------------------------------------------------------
# The whole round trip, with a real kernel and the real grader
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_whole_round_trip_of_a_completed_submission(tmp_path, grader_env):
    course = make_course(tmp_path / "course")
    path = course / "assignments" / BOOK
    nb = source_notebook(check_part="scaled_softmax")
    nb.cells[-2].source = ANSWER
    nbformat.write(nb, path)
    assert nb.cells[0].source == notebook.setup_cell_source(MODULE)

    # 1. set-up cell and in-notebook self-check, executed by a real kernel; saved in place
    ran = notebook.run_notebook(path, path, preset="smoke", impl="starter", timeout=240)
    assert ran.ok, ran.error
    executed = nbformat.read(path, as_version=4)
    shown = [o for o in executed.cells[0].outputs if notebooks.RUN_MIMETYPE in o.get("data", {})]
    line = shown[0]["data"]["text/plain"]
    assert "preset smoke | device cpu" in line and "data " in line
    assert f"your implementation (starter) from {course / 'starter_code' / MODULE}.py" in line
    assert "[PASS] 1/1  grader_fixture: test_softmax_matches_reference" in str(executed.cells[2])
    setup, finish = notebooks.last_run(json.loads(path.read_text()))
    assert setup["module_sha256"] == contract_manifest.sha256_file(
        course / "starter_code" / f"{MODULE}.py"
    )
    assert finish is not None and finish["run_id"] == setup["run_id"]

    # 2. self-check of the whole assignment from the command line
    checked = run(
        ["-m", "autograder", "check", MODULE, "--submission", str(course / "starter_code")],
        grader_env,
    )
    assert checked.returncode == 0 and "Total: 5 / 5" in checked.stdout, checked.stdout

    # 3. packaging, from the course folder, leaving the student's files untouched
    before = tree_state(course)
    out = tmp_path / "submission.zip"
    packed = run(["-m", "replearn.submit", MODULE, "--out", str(out)], grader_env, cwd=course)
    assert packed.returncode == 0, packed.stderr
    assert tree_state(course) == before
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        record = json.loads(archive.read(contract_manifest.MANIFEST_NAME))
    assert names == {
        f"{MODULE}.py",
        BOOK,
        "classifier.safetensors",
        contract_manifest.MANIFEST_NAME,
    }
    assert record["preset"] == ["smoke"] and record["notebooks"][BOOK]["finished"]
    assert record["last_run"] == finish["time"]

    # 4. validation and grading: full marks, integrity verified and visible
    results_path = tmp_path / "results.json"
    graded = run(
        ["-m", "autograder", "grade", str(out), "--results", str(results_path)], grader_env
    )
    assert graded.returncode == 0, graded.stderr[-2000:]
    results = json.loads(results_path.read_text())
    assert results["score"] == results["max_score"] == FULL_MARKS
    assert results["extra_data"]["manifest"] == {"status": "verified", "problems": []}
    assert results["tests"][0]["name"] == manifest.INTEGRITY_TEST_NAME
    assert all(t["status"] == "passed" for t in results["tests"])

    # 5. the written answers, for the graders
    answers = tmp_path / "answers.md"
    exported = run(["-m", "autograder", "answers", str(out), "--out", str(answers)], grader_env)
    assert exported.returncode == 0, exported.stderr
    text = answers.read_text()
    assert "### q1_overflow (1 point)" in text and ANSWER in text and "Why subtract" in text


# --------------------------------------------------------------------------------------------
# Set-up: finding the student's module, saying what was found
# --------------------------------------------------------------------------------------------


def test_setup_line_says_preset_device_data_and_which_file(course, capsys):
    session = notebook.setup(MODULE, preset="smoke", root=course)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    parts = line.split(" | ")
    assert parts[1] == "preset smoke" and parts[2] == "device cpu" and parts[4].startswith("data ")
    assert parts[5] == (
        f"{MODULE}: your implementation (starter) from {course / 'starter_code' / MODULE}.py"
    )
    assert session.impl_info["sha256"] == contract_manifest.sha256_file(
        course / "starter_code" / f"{MODULE}.py"
    )
    assert session.run_id and session.course_root == str(course)


def test_setup_without_a_module_is_a_reading_notebook(course, capsys):
    """Assignment 7 has no student module: the set-up cell is ``notebook.setup()``."""
    assert notebook.setup_cell_source(None).endswith("S = notebook.setup()")
    session = notebook.setup(preset="smoke", root=course)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith("| no student module in this notebook")
    assert session.impl is None and session.module_name == ""
    session.note_data("data: a saved comparison")
    assert session.summary()["data"] == ["data: a saved comparison"]


def test_setup_finds_an_uploaded_or_cloned_module_and_asks_only_once(tmp_path, monkeypatch):
    monkeypatch.delenv("REPLEARN_STUDENT_DIR", raising=False)
    monkeypatch.delenv("REPLEARN_ROOT", raising=False)
    name = "round_trip_upload_7731"  # in no course folder: only the search can find it
    work = tmp_path / "content"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(notebook, "SEARCH_ROOTS", ())
    asked: list[str] = []

    # nothing anywhere: the cell asks (once), remembers the answer for the session
    upload = tmp_path / "my uploads"
    upload.mkdir()
    (upload / f"{name}.py").write_text("VALUE = 1\n")
    found = notebook.find_student_dir(name, ask=lambda prompt: asked.append(prompt) or str(upload))
    assert found == upload.resolve() and len(asked) == 1
    assert os.environ["REPLEARN_STUDENT_DIR"] == str(upload.resolve())
    assert notebook.find_student_dir(name, ask=lambda p: asked.append(p) or "") is None
    assert len(asked) == 1, "asked a second time"
    monkeypatch.delenv("REPLEARN_STUDENT_DIR")

    # an upload into the working folder, and a clone one level down: found without asking
    (work / f"{name}.py").write_text("VALUE = 2\n")
    assert notebook.find_student_dir(name, ask=asked.append) == work.resolve()
    (work / f"{name}.py").unlink()
    clone = work / "replearn" / "starter_code"
    clone.mkdir(parents=True)
    (clone / f"{name}.py").write_text("VALUE = 3\n")
    assert notebook.find_student_dir(name, ask=asked.append) == clone.resolve()
    assert len(asked) == 1
    # nobody to ask (a notebook run by a tool): None, and load's own error explains
    (clone / f"{name}.py").unlink()
    assert notebook.find_student_dir(name) is None


def test_setup_warns_about_a_newer_copy_and_a_shadowing_module(course, monkeypatch, tmp_path):
    stale = course / "starter_code" / f"{MODULE}.py"
    newer = course / "assignments" / f"{MODULE}.py"  # e.g. edited beside the notebook
    newer.write_text(stale.read_text() + "\n# edited\n")
    os.utime(newer, (stale.stat().st_mtime + 60,) * 2)
    monkeypatch.chdir(course / "assignments")
    with pytest.warns(UserWarning, match="newer than the imported"):
        notebook.setup(MODULE, preset="smoke", root=course)
    newer.unlink()
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / f"{MODULE}.py").write_text("VALUE = 0\n")
    monkeypatch.syspath_prepend(str(shadow))
    with pytest.warns(UserWarning, match="would load"):
        notebook.setup(MODULE, preset="smoke", root=course)


# --------------------------------------------------------------------------------------------
# Self-check by part
# --------------------------------------------------------------------------------------------


def test_parts_come_from_the_public_tests(grader_env):
    tests_dir = Path(grader_env["AUTOGRADER_TESTS_ROOT"]) / MODULE
    table = cli.test_functions(tests_dir)
    assert table["test_pairwise_matches_reference"] == ["pairwise_sq_dists"]
    assert cli.part_tests(tests_dir, "scaled_softmax") == {"test_softmax_matches_reference"}
    assert cli.part_tests(tests_dir, "softmax_regression") == {
        "test_loss_matches_reference",
        "test_loss_of_uniform_logits_is_log_k",
    }
    with pytest.raises(KeyError, match="parts: pairwise_sq_dists, scaled_softmax"):
        cli.part_tests(tests_dir, "rotation")


# --------------------------------------------------------------------------------------------
# Packaging and its refusals
# --------------------------------------------------------------------------------------------


def test_package_writes_module_notebook_artefact_and_manifest(course, tmp_path):
    before = tree_state(course)
    sub = submit.package(MODULE, root=course, out=tmp_path / "s.zip")
    assert tree_state(course) == before
    with zipfile.ZipFile(sub.path) as archive:
        record = json.loads(archive.read(contract_manifest.MANIFEST_NAME))
        files = {name: archive.read(name) for name in archive.namelist()}
    assert record["format"] == contract_manifest.FORMAT and record["module"] == MODULE
    for name, entry in record["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
    assert sorted(record["files"]) == sorted(set(files) - {contract_manifest.MANIFEST_NAME})
    assert record["replearn"] and record["preset"] == ["smoke"] and record["last_run"]
    assert not sub.warnings, sub.warnings
    # packaging again replaces the earlier submission zip, and only that
    assert submit.package(MODULE, root=course, out=tmp_path / "s.zip").path == sub.path


def test_refuses_a_missing_module_notebook_or_artefact(course):
    (course / "assignments" / "classifier.safetensors").unlink()
    refused(course, "missing required file classifier.safetensors")
    torch.save({"w": torch.zeros(1)}, course / "assignments" / "classifier.pt")
    refused(course, "classifier.pt, a pickle file", "save_weights")
    (course / "assignments" / BOOK).unlink()
    refused(course, "no notebook of grader_fixture")
    (course / "starter_code" / f"{MODULE}.py").unlink()
    refused(course, "missing required file", f"{MODULE}.py")


def test_refuses_a_notebook_never_executed_or_not_finished(course):
    nbformat.write(source_notebook(), course / "assignments" / BOOK)
    refused(course, "was never executed")
    fake_run(course, finished=False)
    refused(course, "did not run to the end")


def test_refuses_outputs_that_do_not_come_from_the_submitted_code(course):
    module = course / "starter_code" / f"{MODULE}.py"
    module.write_text(module.read_text() + "\n# edited after the run\n")
    refused(course, "outputs do not come from the submitted grader_fixture.py", "Run All")
    fake_run(course, impl="solution")  # a notebook run against the reference
    message = refused(course, "solution implementation")
    assert "not your own module" in message


def test_refuses_an_unsaved_notebook_from_the_package_cell(course):
    refused(course, "save the notebook", expect_run_id="a-run-the-file-does-not-hold")


def test_refuses_what_exceeds_the_limits_or_the_grader_would_drop(course, monkeypatch, tmp_path):
    big = {"w": torch.zeros(300_000)}  # 1.2 MB of float32, over the declared 1 MB
    submit.save_weights(big, course / "assignments" / "classifier.safetensors")
    refused(course, "classifier.safetensors is", "over the 1000000 byte limit")
    fake_run(course)
    with monkeypatch.context() as patch:
        patch.setattr(contract_files, "MAX_TOTAL_BYTES", 1000)
        refused(course, "over the 1000 byte limit")
    pickle = tmp_path / "extra.pt"
    torch.save({"w": torch.zeros(1)}, pickle)
    refused(course, "only safetensors artefacts", artefacts=[pickle])


def test_never_overwrites_a_file_that_is_not_a_submission(course):
    precious = course.parent / "out.zip"
    precious.write_bytes(b"the student's own zip of something else")
    with pytest.raises(submit.SubmissionError, match="not an earlier submission zip"):
        submit.package(MODULE, root=course, out=precious)
    assert precious.read_bytes() == b"the student's own zip of something else"


def test_warns_about_an_unanswered_question(course, tmp_path):
    fake_run(course, answer="YOUR ANSWER HERE")
    sub = submit.package(MODULE, root=course, out=tmp_path / "s.zip")
    assert any("written answer(s) still empty: q1_overflow" in w for w in sub.warnings)


# --------------------------------------------------------------------------------------------
# Validation by the grader
# --------------------------------------------------------------------------------------------


@pytest.fixture
def packed(course, tmp_path) -> Path:
    """The packaged submission, unzipped: what the grader stages."""
    sub = submit.package(MODULE, root=course, out=tmp_path / "s.zip")
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(sub.path) as archive:
        archive.extractall(folder)
    return folder


def test_grader_verifies_an_untouched_submission(packed):
    verdict = manifest.verify(packed, {MODULE})
    assert verdict.status == "verified", verdict.problems
    assert manifest.verify(packed.parent / "course" / "starter_code", {MODULE}).status == "absent"


def test_grader_reports_a_file_changed_or_added_after_packaging(packed):
    module = packed / f"{MODULE}.py"
    module.write_text(module.read_text().replace("return", "return  ", 1))
    (packed / "notes.txt").write_text("added later")
    verdict = manifest.verify(packed, {MODULE})
    assert verdict.status == "failed"
    text = verdict.text()
    assert text.startswith("SUBMISSION INTEGRITY FAILED")
    assert f"{MODULE}.py changed after packaging" in text
    assert "notes.txt was added after packaging" in text
    assert "outputs do not come from the submitted" in text  # the notebook ran other bytes


def test_grader_is_not_fooled_by_a_rewritten_manifest(packed):
    """Edit the code, then fix the manifest's hashes: the notebook's own record still disagrees."""
    module = packed / f"{MODULE}.py"
    module.write_text(module.read_text() + "\n# not what the notebook ran\n")
    record = json.loads((packed / contract_manifest.MANIFEST_NAME).read_text())
    record["files"][f"{MODULE}.py"] = {
        "sha256": contract_manifest.sha256_file(module),
        "bytes": module.stat().st_size,
    }
    (packed / contract_manifest.MANIFEST_NAME).write_text(json.dumps(record))
    verdict = manifest.verify(packed, {MODULE})
    assert verdict.status == "failed"
    assert any("outputs do not come from the submitted" in p for p in verdict.problems)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        json.dumps({"format": "other/1"}).encode(),
        json.dumps(
            {"format": contract_manifest.FORMAT, "module": MODULE, "files": {"../x": {}}}
        ).encode(),
        json.dumps(
            {"format": contract_manifest.FORMAT, "module": "torch", "files": "all"}
        ).encode(),
    ],
    ids=["not-json", "list", "other-format", "escaping-path", "wrong-types"],
)
def test_grader_reports_a_malformed_manifest_without_crashing(packed, content):
    (packed / contract_manifest.MANIFEST_NAME).write_bytes(content)
    verdict = manifest.verify(packed, {MODULE})
    assert verdict.status == "failed" and verdict.problems


@pytest.fixture
def tampered(course, tmp_path) -> Path:
    """A packaged submission whose module was edited (a comment) after packaging."""
    sub = submit.package(MODULE, root=course, out=tmp_path / "s.zip")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(sub.path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + b"\n# edited\n" if name == f"{MODULE}.py" else data)
    return tampered


def test_require_manifest_refuses_a_tampered_submission(tampered, tmp_path, grader_env):
    refused_path = tmp_path / "refused.json"
    proc = run(
        ["-m", "autograder", "grade", str(tampered), "--results", str(refused_path)]
        + ["--require-manifest"],
        grader_env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(refused_path.read_text())
    assert data["score"] == 0 and data["output"].startswith("SUBMISSION INTEGRITY FAILED")
    assert [t["name"] for t in data["tests"]] == [manifest.INTEGRITY_TEST_NAME]


@pytest.mark.slow
def test_tampered_submission_is_graded_with_a_visible_flag(tampered, tmp_path, grader_env):
    flagged_path = tmp_path / "flagged.json"
    proc = run(
        ["-m", "autograder", "grade", str(tampered), "--results", str(flagged_path)], grader_env
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(flagged_path.read_text())
    assert data["output"].startswith("SUBMISSION INTEGRITY FAILED")
    assert data["extra_data"]["manifest"]["status"] == "failed"
    flag = data["tests"][0]
    assert flag["name"] == manifest.INTEGRITY_TEST_NAME and flag["status"] == "failed"
    assert flag["visibility"] == "visible" and flag["max_score"] == 0
    assert data["score"] == FULL_MARKS  # graded as submitted (the edit is a comment)


# --------------------------------------------------------------------------------------------
# Written answers
# --------------------------------------------------------------------------------------------


def test_answers_export_every_answer_cell_of_every_notebook(course, tmp_path):
    sub = submit.package(MODULE, root=course, out=tmp_path / "s.zip")
    text, answers = submission.written_answers(sub.path)
    assert [a.grade_id for a in answers] == ["q1_overflow"] and answers[0].points == 1
    assert text.startswith("# Written answers: s.zip")
    assert "## 00_grader_fixture.ipynb" in text and ANSWER in text
    assert "> **Question 1 (1 point).** Why subtract the maximum?" in text
    fake_run(course, answer="YOUR ANSWER HERE")
    text, answers = submission.written_answers(course / "assignments")
    assert answers[0].text == "" and "_(no answer)_" in text


def test_run_records_are_read_from_the_data_bundle_or_the_output_metadata(course):
    """A front end that drops unknown mimetypes on saving still keeps the output's metadata."""
    nb = json.loads((course / "assignments" / BOOK).read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if notebooks.RUN_MIMETYPE in output.get("data", {}):
                record = output["data"].pop(notebooks.RUN_MIMETYPE)
                output["data"]["text/plain"] = "the set-up line"
                output["metadata"] = {notebooks.RUN_MIMETYPE: record}
    setup, finish = notebooks.last_run(nb)
    assert setup["event"] == "setup" and finish["run_id"] == setup["run_id"]
    nb["cells"][0]["outputs"][0]["metadata"] = {notebooks.RUN_MIMETYPE: "not a record"}
    assert notebooks.last_run(nb) == (None, None)


@pytest.mark.slow
def test_round_trip_of_a_real_assignment_completed_with_its_reference(tmp_path, monkeypatch):
    """The same trip on a course assignment (pretext tasks): its real notebook, tests and grader."""
    real = "pretext_tasks"
    book = "03_pretext_tasks.ipynb"
    for key in ("AUTOGRADER_TESTS_ROOT", "AUTOGRADER_SOLUTIONS_ROOT", "REPLEARN_IMPL"):
        monkeypatch.delenv(key, raising=False)
    course = tmp_path / "course"
    for sub in ("starter_code", "assignments"):
        (course / sub).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / f"{real}.py", course / "starter_code")  # "completed"
    shutil.copy(REPO / "assignments" / book, course / "assignments")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "REPLEARN_STUDENT_DIR": ""}

    ran = notebook.run_notebook(
        course / "assignments" / book,
        course / "assignments" / book,
        preset="smoke",
        impl="starter",
        extra_env={"REPLEARN_STUDENT_DIR": str(course / "starter_code")},
        timeout=600,
    )
    assert ran.ok, ran.error
    setup, finish = notebooks.last_run(json.loads((course / "assignments" / book).read_text()))
    assert setup["module_sha256"] == contract_manifest.sha256_file(
        course / "starter_code" / f"{real}.py"
    )
    assert finish is not None and finish["run_id"] == setup["run_id"]

    checked = run(
        ["-m", "autograder", "check", real, "--submission", str(course / "starter_code")], env
    )
    assert checked.returncode == 0 and "Total:" in checked.stdout, checked.stdout[-2000:]

    out = tmp_path / "submission.zip"
    packed = run(["-m", "replearn.submit", real, "--root", str(course), "--out", str(out)], env)
    assert packed.returncode == 0, packed.stderr[-2000:]
    with zipfile.ZipFile(out) as archive:
        assert {f"{real}.py", book, contract_manifest.MANIFEST_NAME} <= set(archive.namelist())

    results_path = tmp_path / "results.json"
    graded = run(["-m", "autograder", "grade", str(out), "--results", str(results_path)], env)
    assert graded.returncode == 0, graded.stderr[-2000:]
    results = json.loads(results_path.read_text())
    assert results["score"] == results["max_score"] > 0
    assert results["extra_data"]["manifest"] == {"status": "verified", "problems": []}
