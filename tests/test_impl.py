"""Tests for replearn.impl: choosing and importing the student's or the reference module.

Every test builds its own tiny course folder (``starter_code/`` and ``solutions/`` holding small
test modules) under ``tmp_path``, so nothing depends on the real assignments.
"""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from replearn import impl

MODULE_SOURCE = """
from __future__ import annotations

from dataclasses import dataclass

WHO = "{who}"


@dataclass
class Pair:
    left: int
    right: list[int]


def combine(a, b):
    return a + b
"""


def write_module(folder: Path, name: str, who: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(MODULE_SOURCE.format(who=who)))
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No REPLEARN_* variable leaks in, and no loaded test module leaks out."""
    for variable in (impl.IMPL_ENV, impl.ROOT_ENV, impl.STUDENT_DIR_ENV):
        monkeypatch.delenv(variable, raising=False)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("replearn_impl"):
            del sys.modules[name]


@pytest.fixture
def course(tmp_path) -> Path:
    root = tmp_path / "course"
    write_module(root / "starter_code", "adder", "starter")
    write_module(root / "solutions", "adder", "solution")
    write_module(root / "solutions", "painter", "solution")
    (root / "solutions" / "_private_helper.py").write_text("X = 1\n")
    (root / "assignments" / "deep" / "er").mkdir(parents=True)
    return root


# ------------------------------------------------------------------------------ choosing


def test_default_is_the_students_starter_code(course):
    module = impl.load("adder", root=course)
    assert module.WHO == "starter"
    assert module.__replearn_impl__["impl"] == "starter"
    assert module.__replearn_impl__["path"] == str(course / "starter_code" / "adder.py")


def test_solution_on_request_and_both_coexist(course):
    starter = impl.load("adder", root=course)
    solution = impl.load("adder", "solution", root=course)
    assert (starter.WHO, solution.WHO) == ("starter", "solution")
    assert starter.__name__ == "replearn_impl.starter.adder"
    assert solution.__name__ == "replearn_impl.solution.adder"
    assert sys.modules["replearn_impl.starter.adder"] is starter
    assert sys.modules["replearn_impl.solution.adder"] is solution


def test_environment_variable_selects_and_argument_overrides(course, monkeypatch):
    monkeypatch.setenv(impl.IMPL_ENV, "solution")
    assert impl.load("adder", root=course).WHO == "solution"
    assert impl.load("adder", "starter", root=course).WHO == "starter"


def test_bad_impl_values_are_rejected_with_the_choices(course, monkeypatch):
    with pytest.raises(ValueError, match=r"impl='reference'.*'starter'.*'solution'"):
        impl.load("adder", "reference", root=course)
    monkeypatch.setenv(impl.IMPL_ENV, "solutions")
    with pytest.raises(ValueError, match=r"\$REPLEARN_IMPL='solutions'"):
        impl.load("adder", root=course)


def test_module_name_must_be_bare(course):
    assert impl.load("adder.py", root=course).WHO == "starter"
    with pytest.raises(ValueError, match="bare module name"):
        impl.load("starter_code/adder", root=course)


# ------------------------------------------------------------------------------ finding


def test_root_from_environment(course, monkeypatch):
    monkeypatch.setenv(impl.ROOT_ENV, str(course))
    assert impl.load("adder", "solution").WHO == "solution"


def test_root_found_upwards_from_working_directory(course, monkeypatch):
    monkeypatch.chdir(course / "assignments" / "deep" / "er")
    module = impl.load("adder")
    assert Path(module.__file__) == course / "starter_code" / "adder.py"


def test_root_not_found_says_how_to_point_at_it(tmp_path, monkeypatch):
    empty = tmp_path / "nowhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    # Also hide the repository this file lives in, which does have starter_code/.
    monkeypatch.setattr(impl, "__file__", str(empty / "replearn" / "impl.py"))
    with pytest.raises(impl.ImplError, match=r"REPLEARN_ROOT.*root=.*REPLEARN_STUDENT_DIR"):
        impl.load("adder")


def test_root_without_course_folders_is_rejected(tmp_path):
    with pytest.raises(impl.ImplError, match="neither starter_code/ nor solutions/"):
        impl.load("adder", root=tmp_path)
    with pytest.raises(impl.ImplError, match="is not a folder"):
        impl.load("adder", root=tmp_path / "missing")


def test_missing_module_lists_the_available_ones(course):
    with pytest.raises(impl.ImplError, match=r"does not exist.*painter") as error:
        impl.load("contrastive_learning", "solution", root=course)
    assert "_private_helper" not in str(error.value)


def test_student_release_without_solutions_says_so(course):
    for path in (course / "solutions").iterdir():
        path.unlink()
    (course / "solutions").rmdir()
    with pytest.raises(impl.ImplError, match="not part of the student release"):
        impl.load("adder", "solution", root=course)
    assert impl.load("adder", root=course).WHO == "starter"


def test_student_dir_argument_and_environment(course, tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    write_module(uploads, "adder", "uploaded")
    module = impl.load("adder", student_dir=uploads, root=course)
    assert module.WHO == "uploaded"
    assert module.__replearn_impl__ == {
        "impl": "starter",
        "path": str(uploads / "adder.py"),
        "sha256": module.__replearn_impl__["sha256"],
    }
    monkeypatch.setenv(impl.STUDENT_DIR_ENV, str(uploads))
    assert impl.load("adder").WHO == "uploaded"  # no course folder needed at all
    # The reference still comes from the course folder.
    assert impl.load("adder", "solution", root=course).WHO == "solution"
    with pytest.raises(impl.ImplError, match=r"painter\.py is not in .*Modules there: \['adder'\]"):
        impl.load("painter")


def test_module_names(course):
    assert impl.module_names(course) == ["adder", "painter"]
    assert impl.module_names(course, impl="starter") == ["adder"]


# ------------------------------------------------------------------------------ importing


def test_unchanged_file_returns_the_same_module(course):
    first = impl.load("adder", root=course)
    assert impl.load("adder", root=course) is first
    assert impl.load("adder", root=course, reload=True) is not first


def test_edit_with_same_size_and_mtime_is_picked_up(course, monkeypatch):
    # With bytecode caching on (the default outside this repository's CI), a plain
    # spec_from_file_location import would reuse the stale .pyc here.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = course / "starter_code" / "adder.py"
    module = impl.load("adder", root=course)
    assert module.combine(5, 3) == 8
    stat = path.stat()
    path.write_text(path.read_text().replace("a + b", "a - b"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # an edit within the same second
    assert path.stat().st_size == stat.st_size
    edited = impl.load("adder", root=course)
    assert edited is not module
    assert edited.combine(5, 3) == 2
    assert sys.modules["replearn_impl.starter.adder"] is edited


def test_no_bytecode_written_into_the_students_folder(course, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    impl.load("adder", root=course)
    assert not (course / "starter_code" / "__pycache__").exists()


def test_dataclasses_and_pickle_work(course):
    module = impl.load("adder", root=course)
    pair = module.Pair(1, [2, 3])
    restored = pickle.loads(pickle.dumps(pair))
    assert type(restored) is module.Pair
    assert restored == pair


def test_failed_import_is_not_cached(course):
    path = course / "starter_code" / "adder.py"
    good = path.read_text()
    path.write_text(good + "\nraise RuntimeError('student bug')\n")
    with pytest.raises(RuntimeError, match="student bug"):
        impl.load("adder", root=course)
    assert "replearn_impl.starter.adder" not in sys.modules
    path.write_text(good)
    assert impl.load("adder", root=course).combine(1, 1) == 2


# ------------------------------------------------------------------------------ reporting


def test_describe(course):
    starter = impl.load("adder", root=course)
    solution = impl.load("adder", "solution", root=course)
    assert impl.describe(starter) == (
        f"adder: your implementation (starter) from {course / 'starter_code' / 'adder.py'}"
    )
    assert impl.describe(solution).startswith("adder: the reference solution from ")
    assert "not through replearn.impl.load" in impl.describe(textwrap)


def test_warn_if_shadowed_by_something_on_sys_path(course, tmp_path, monkeypatch):
    shadow_dir = tmp_path / "site"
    write_module(shadow_dir, "adder", "impostor")
    monkeypatch.syspath_prepend(str(shadow_dir))
    with pytest.warns(UserWarning, match=r"`import adder` would load .*site.*replearn\.impl\.load"):
        origin = impl.warn_if_shadowed("adder", root=course)
    assert origin == str(shadow_dir / "adder.py")


def test_warn_if_shadowed_by_an_installed_package(course):
    with pytest.warns(UserWarning, match="`import pytest` would load"):
        assert impl.warn_if_shadowed("pytest", root=course) is not None


def test_no_warning_for_own_file_or_unknown_name(course, monkeypatch):
    monkeypatch.syspath_prepend(str(course / "starter_code"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert impl.warn_if_shadowed("adder", root=course) is None
        assert impl.warn_if_shadowed("no_such_module_anywhere_4521", root=course) is None
