"""The catalogue of known mistakes: a failed public check names the mistake it matches.

The mechanism is tested end to end on the grader's fixture assignment (record, then the
student's ``check``, then grading with hidden tests); every entry of every course catalogue is
tested against the fresh recordings of ``tests/test_expected_recordings.py`` (the public check
names exactly that entry) and against the hidden tests (in one process,
``instructor.grader_harness``: they catch every entry).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import codec, mistakes
from autograder.mistakes import CatalogueError, Mistake
from replearn.contract import assignments

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "grader_assignment"
COURSE_TESTS = REPO / "autograder" / "tests"
CATALOGUES = {
    folder.name: mistakes.load_catalogue(folder)
    for folder in sorted(COURSE_TESTS.iterdir())
    if folder.is_dir() and mistakes.catalogue_path(folder).is_file()
}
ENTRIES = [(module, m.key) for module, catalogue in CATALOGUES.items() for m in catalogue]
ALLOWED = [
    (folder.name, entry)
    for folder in sorted(COURSE_TESTS.iterdir())
    if folder.is_dir() and mistakes.catalogue_path(folder).is_file()
    for entry in mistakes.load_catalogue(folder, "ALLOWED")
]


# ---- the patch --------------------------------------------------------------------------------

SOURCE = '''\
def f(x):
    """Doubles x (x * 2 appears here, outside the region)."""
    ### BEGIN SOLUTION
    y = x * 2
    ### END SOLUTION
    return y


class A:
    def g(self, x):
        ### BEGIN SOLUTION
        return x * 2
        ### END SOLUTION
'''


def test_a_mistake_is_made_inside_its_functions_solution_region_only():
    made = Mistake("f", "triples", "x is doubled, not tripled.", (("x * 2", "x * 3"),)).apply(
        SOURCE
    )
    assert "y = x * 3" in made and "(x * 2 appears here" in made and "return x * 2" in made
    method = Mistake("A.g", "adds", "x is doubled.", (("x * 2", "x + 2"),)).apply(SOURCE)
    assert "return x + 2" in method and "y = x * 2" in method
    with pytest.raises(CatalogueError, match="occurs 0 times"):
        Mistake("f", "absent", "m.", (("x * 5", "x"),)).apply(SOURCE)
    with pytest.raises(CatalogueError, match="defines no h"):
        Mistake("h", "nowhere", "m.", (("x", "y"),)).apply(SOURCE)
    with pytest.raises(CatalogueError, match="does not compile"):
        Mistake("f", "broken", "m.", (("y = x * 2", "y = ("),)).apply(SOURCE)
    with pytest.raises(CatalogueError, match="lower-case"):
        Mistake("f", "Bad Id", "m.", (("x", "y"),))


@pytest.mark.parametrize("module", sorted(CATALOGUES))
def test_every_entry_of_a_course_catalogue_applies_to_the_reference(module):
    source = (REPO / "solutions" / f"{module}.py").read_text()
    graded = _graded_functions(module)
    for mistake in CATALOGUES[module]:
        assert mistake.function in graded, f"{mistake.key}: not a graded function of {module}"
        assert mistake.apply(source) != source


def test_catalogues_never_ship():
    from instructor import release

    for module in CATALOGUES:
        relative = f"autograder/tests/{module}/{mistakes.CATALOGUE}"
        assert not release._shipped(relative), relative


@pytest.mark.parametrize("module", sorted(CATALOGUES))
def test_the_mistakes_command_lists_each_recorded_entry_in_words(module, capsys):
    """``python -m autograder mistakes NAME``: every entry, its message and the public test that
    names it, read from the shipped recording."""
    from autograder.cli import main

    assert main(["mistakes", module]) == 0
    out = capsys.readouterr().out
    catalogue = CATALOGUES[module]
    assert f"{module}: {len(catalogue)} known mistakes" in out
    for m in catalogue:
        assert f"{m.function} / {m.id}: {m.message}  [test_" in out, m.key


def _graded_functions(module: str) -> set[str]:
    from instructor.handout_leaks import graded_parts

    return set(graded_parts(REPO / "solutions")[module])


# ---- end to end on the fixture assignment ------------------------------------------------------


def _autograder(*args: str, tests_root: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        cwd=REPO,
        env={
            **os.environ,
            "AUTOGRADER_TESTS_ROOT": str(tests_root),
            "AUTOGRADER_SOLUTIONS_ROOT": str(FIXTURE / "solutions"),
            "OMP_NUM_THREADS": "2",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_failed_check_names_the_mistake_whose_recorded_output_it_matches(tmp_path):
    import torch

    from autograder import api

    catalogue = [
        Mistake("f", "doubled", "f doubles; halve it.", (("a", "b"),)),
        Mistake("f", "negated", "f negates; keep the sign.", (("a", "b"),)),
    ]
    wrong = torch.tensor([2.0, 4.0])
    failures = {
        "f/doubled": {"test_f": mistakes.point(1, "tensor", "f(x)", wrong, 1e-5, 1e-6)},
        "f/negated": {"test_f": mistakes.point(1, "tensor", "f(x)", -wrong / 2, 1e-5, 1e-6)},
    }
    table = mistakes.build_table(catalogue, failures)
    (tmp_path / mistakes.RECORD_FILE).write_bytes(codec.encode(table))
    mistakes.forget_tables()
    want = torch.tensor([1.0, 2.0])
    try:
        api.begin_test(tmp_path, "test_f")
        with pytest.raises(AssertionError, match="f doubles; halve it") as failed:
            api.expect_tensor(wrong * (1 + 1e-7), want, rtol=1e-5, atol=1e-6, name="f(x)")
        assert "mismatched" in str(failed.value)  # what was observed comes first
        assert api.found_mistakes() == ["f/doubled"]
        api.begin_test(tmp_path, "test_f")  # another output: no known mistake named
        with pytest.raises(AssertionError) as failed:
            api.expect_tensor(wrong * 3, want, rtol=1e-5, atol=1e-6, name="f(x)")
        assert "known mistake" not in str(failed.value) and api.found_mistakes() == []
        api.begin_test(tmp_path, "test_f")  # the same output at another check: not named
        api.expect_true(True, "a first check passes")
        with pytest.raises(AssertionError) as failed:
            api.expect_tensor(wrong, want, rtol=1e-5, atol=1e-6, name="f(x)")
        assert "known mistake" not in str(failed.value)
        api.set_hidden(True)  # hidden tests never name a mistake
        api.begin_test(tmp_path, "test_f")
        with pytest.raises(AssertionError) as failed:
            api.expect_tensor(wrong, want, rtol=1e-5, atol=1e-6, name="f(x)")
        assert "known mistake" not in str(failed.value)
    finally:
        api.set_hidden(False)
        api.begin_test(None, None)
        mistakes.forget_tables()


@pytest.mark.slow
def test_the_fixtures_mistakes_are_recorded_named_by_check_and_kept_from_hidden_tests(tmp_path):
    tests_root = tmp_path / "tests"
    shutil.copytree(FIXTURE / "tests", tests_root)
    recorded = _autograder("record", "grader_fixture", tests_root=tests_root)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "2 of 2 known mistakes named by the public checks" in recorded.stdout
    table_file = tests_root / "grader_fixture" / mistakes.RECORD_FILE
    _header, table = codec.decode(table_file.read_bytes())
    # words and wrong outputs only: no line of the reference's code
    reference = (FIXTURE / "solutions" / "grader_fixture.py").read_text()
    text = json.dumps(table, default=str)
    for line in reference.splitlines():
        if len(line.strip()) > 12 and not line.strip().startswith(("#", '"""', "def ")):
            assert line.strip() not in text, line

    catalogue = mistakes.load_catalogue(tests_root / "grader_fixture")
    mistake = next(m for m in catalogue if m.id == "sum-not-mean")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "grader_fixture.py").write_text(mistake.apply(reference))
    checked = _autograder(
        "check", "grader_fixture", "--submission", str(wrong), tests_root=tests_root
    )
    assert checked.returncode == 0, checked.stderr
    report = checked.stdout
    assert f"known mistake in softmax_regression_loss gives: {mistake.message}" in report
    assert "[FAIL] 0/2  grader_fixture: test_loss_matches_reference" in report
    assert "temperature" not in report.split("Total:")[0].lower()  # the other entry: not named

    starter = tmp_path / "starter"
    starter.mkdir()
    shutil.copy(FIXTURE / "starter" / "grader_fixture.py", starter)
    checked = _autograder(
        "check", "grader_fixture", "--submission", str(starter), tests_root=tests_root
    )
    assert "raised NotImplementedError: write this function" in checked.stdout
    assert "known mistake" not in checked.stdout

    results = tmp_path / "results.json"
    graded = _autograder(
        "grade", str(wrong), "--results", str(results), "--seed", "3", tests_root=tests_root
    )
    assert graded.returncode == 0, graded.stderr
    data = json.loads(results.read_text())
    public = {t["name"].split(": ")[1]: t for t in data["tests"] if t["visibility"] == "visible"}
    assert public["test_loss_matches_reference"]["extra_data"]["known_mistakes"] == [mistake.key]
    hidden = [t for t in data["tests"] if t["visibility"] != "visible"]
    assert any(t["status"] == "failed" for t in hidden)
    assert all("known mistake" not in t["output"] for t in hidden)
    assert all("known_mistakes" not in t["extra_data"] for t in hidden)


# ---- every entry of the course's catalogues ----------------------------------------------------


@pytest.fixture(scope="session")
def course_verdicts(fresh_recordings) -> dict:
    """What each entry's public tests gave in a fresh recording, and what the hand-out names."""
    return json.loads((fresh_recordings / "verdicts.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("module,key", ENTRIES)
def test_the_public_check_names_exactly_this_mistake(module, key, course_verdicts):
    catalogue = [m for m in CATALOGUES[module] if m.key == key]
    problems = mistakes.variant_problems(catalogue, course_verdicts, module, hidden=False)
    assert problems[key] == []


@pytest.fixture(scope="module")
def hidden_verdicts() -> dict:
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("module,key", ENTRIES)
def test_a_hidden_test_catches_this_mistake(module, key, hidden_verdicts):
    if module not in hidden_verdicts:
        hidden_verdicts[module] = _hidden_runs(module)
    assert hidden_verdicts[module][key], f"{key}: every hidden test of it passes"


def _hidden_runs(module: str) -> dict[str, list[str]]:
    """``{key: [hidden tests that fail on the entry]}``, each run in this process as the grader
    runs it (``instructor.grader_harness``), with grading seed 0."""
    from instructor import grader_harness as harness

    tests = harness.test_functions(module, "hidden")
    source = (assignments.solutions_root() / f"{module}.py").read_text()
    failing: dict[str, list[str]] = {}
    for index, mistake in enumerate(CATALOGUES[module]):
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mistake_{os.getpid()}_{index}.py"
        path.write_text(mistake.apply(source))
        try:
            factory = harness.module_copies(path, module)
            failing[mistake.key] = [
                name
                for name, fn in tests.items()
                if any(
                    mistake.function == d or mistake.function.startswith(d + ".")
                    for d in harness.marks(fn, "functions")
                )
                and not harness.run_test(fn, module, factory, hidden=True, call_limit_s=60).passed
            ]
        finally:
            path.unlink(missing_ok=True)
    return failing


# ---- correct alternatives ----------------------------------------------------------------------


@pytest.mark.parametrize("module,entry", ALLOWED, ids=[f"{m}-{e.key}" for m, e in ALLOWED])
def test_a_correct_alternative_passes_every_test_of_its_function(module, entry, tmp_path):
    """What the notebook or the docstring allows must pass: each ``ALLOWED`` entry of a
    catalogue, made in the reference, passes every public and hidden test of its function."""
    from autograder import banned
    from instructor import grader_harness as harness

    assert entry.function in _graded_functions(module), entry.key
    reference = assignments.solutions_root() / f"{module}.py"
    variant = entry.apply(reference.read_text())
    assert not banned.scan(variant, banned.read_banned(reference)), f"{entry.key} is banned"
    path = tmp_path / f"{module}.py"
    path.write_text(variant)
    factory = harness.module_copies(path, module)
    for kind in ("public", "hidden"):
        tests = {
            name: fn
            for name, fn in harness.test_functions(module, kind).items()
            if any(
                entry.function == d or entry.function.startswith(d + ".")
                for d in harness.marks(fn, "functions")
            )
        }
        assert tests, f"{entry.key}: no {kind} test of {entry.function}"
        for name, fn in tests.items():
            outcome = harness.run_test(
                fn, module, factory, hidden=kind == "hidden", call_limit_s=60
            )
            assert outcome.passed, f"{entry.key}: {kind} {name} fails: {outcome}"
