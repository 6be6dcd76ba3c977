"""The habits of a maintained project: lint, formatting, clean notebooks, generated starters."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_passes():
    done = run(sys.executable, "-m", "ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied():
    done = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert done.returncode == 0, "run `make format`:\n" + done.stdout + done.stderr


def notebooks() -> list[Path]:
    return sorted((REPO / "assignments").glob("*.ipynb"))


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs; clear them (executed copies go to build/)"
    )


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_imports_its_logic_and_starts_with_setup(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("notebook.setup(" in c for c in code[:3]), "the set-up cell must come first"
    assert not any(
        re.search(r"^\s*def \w+\(", c, re.M) and "BEGIN SOLUTION" not in c for c in code
    ), "logic belongs in the module or replearn/, not in a cell"


def test_starter_code_matches_the_generator():
    done = run(sys.executable, "-m", "instructor.release", "starter", "--check")
    assert done.returncode == 0, (
        "starter_code/ drifted from solutions/; run `make starter`\n"
        + done.stdout[-3000:]
        + done.stderr[-2000:]
    )


def test_readme_opens_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_constraints_pin_the_torch_builds_and_pyproject_declares_ranges():
    pins = (REPO / "constraints.txt").read_text()
    assert "torch==2.14.1" in pins.splitlines() and "torchvision==0.29.1" in pins.splitlines()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'"torch>=[\d.]+"', pyproject) and "torch==" not in pyproject


def test_student_module_names_shadow_no_installed_package():
    # PathFinder looks on sys.path only: a student module an earlier test imported by file path
    # (it sits in sys.modules without a spec) is neither reported nor in the way.
    from importlib.machinery import PathFinder

    for path in sorted((REPO / "solutions").glob("*.py")):
        spec = PathFinder.find_spec(path.stem)
        assert spec is None or str(REPO) in str(spec.origin), f"{path.stem} shadows {spec.origin}"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_first_code_cell_is_the_generated_setup_cell(path):
    from replearn.notebook import setup_cell_source

    nb = json.loads(path.read_text())
    first = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    module = re.search(r'notebook\.setup\((?:"(\w+)")?\)', first)
    assert module, f'{path.name}: the first code cell must call notebook.setup("<module>")'
    assert first.strip() == setup_cell_source(module.group(1)).strip(), (
        f"{path.name}: first cell differs from replearn.notebook.setup_cell_source(); paste its output"
    )
