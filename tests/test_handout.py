"""The student hand-out as students get it: one course identity, its own README and installer,
the zip's name, and (slow) the README's commands walked in an empty folder."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from instructor import release
from replearn.notebook import setup_cell_source

REPO = Path(__file__).resolve().parent.parent
HANDOUT_README = REPO / "handout" / "README.md"
INSTALLER = REPO / "handout" / "install.py"


def write_pyproject(repo: Path, table: str) -> Path:
    """A copy of the real pyproject.toml with ``[tool.replearn]`` replaced by ``table``."""
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"\[tool\.replearn\].*?(?=\n\[)", table.strip() + "\n", text, flags=re.S)
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "pyproject.toml").write_text(text)
    return repo


# --------------------------------------------------------------------------------------------
# One course identity
# --------------------------------------------------------------------------------------------


def test_course_identity_is_configured_once_and_checked(tmp_path):
    version = release.project_version(REPO)
    none = release.course_identity(
        write_pyproject(tmp_path / "a", '[tool.replearn]\ncourse = "rl"')
    )
    assert (none.course, none.version, none.handout_url, none.handout_ref) == (
        "rl",
        version,
        "",
        "",
    )
    assert none.folder == f"rl-student-{version}" and none.colab_url("assignments/x.ipynb") is None

    hub = release.course_identity(
        write_pyproject(
            tmp_path / "b",
            """
        [tool.replearn]
        course = "replearn"
        handout_url = "https://github.com/uni-vision/rl-handout.git/"
    """.replace("    ", ""),
        )
    )
    assert hub.handout_url == "https://github.com/uni-vision/rl-handout"
    assert hub.handout_ref == f"v{version}", "the tag defaults to v<version>"
    assert hub.colab_url("assignments/01_x.ipynb") == (
        f"https://colab.research.google.com/github/uni-vision/rl-handout/blob/v{version}/assignments/01_x.ipynb"
    )
    other = release.course_identity(
        write_pyproject(
            tmp_path / "c",
            """
        [tool.replearn]
        handout_url = "https://codeberg.org/uni/handout"
        handout_ref = "2026-autumn"
    """.replace("    ", ""),
        )
    )
    assert other.handout_ref == "2026-autumn" and other.colab_url("a.ipynb") is None  # no badge

    for bad in (
        "https://github.com/OWNER/REPO",
        "https://github.com/<org>/x",
        "git@github.com:a/b",
    ):
        repo = write_pyproject(tmp_path / "d", f'[tool.replearn]\nhandout_url = "{bad}"')
        with pytest.raises(release.ReleaseError, match="handout_url"):
            release.course_identity(repo)
    assert release.course_identity(REPO).course == "replearn"


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / n for n in names if (REPO / n).is_file() and not n.endswith((".whl", ".npz"))]


def test_no_placeholder_address_anywhere():
    """No invented organisation, no badge or install line naming the instructors' repository,
    no ``<hand-out URL>`` left for a reader to fill in: the hand-out's address exists once, in
    ``[tool.replearn]``, and the release stamps it."""
    configured = release.course_identity(REPO).handout_url
    problems = []
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        relative = path.relative_to(REPO).as_posix()
        for found in re.finditer(r"github\.com/([\w.-]+)/([\w.-]+)", text):
            owner, name = found.group(1), found.group(2).removesuffix(".git")
            if owner == "replearn-course" or (
                name == "replearn" and f"https://github.com/{owner}/{name}" != configured
            ):
                problems.append(f"{relative}: {found.group(0)}")
        for pattern in (r"<hand-out URL>", r"\bOWNER/REPO\b", r"\byour-org\b", r"@ git\+https://"):
            if re.search(pattern, text) and relative != "tests/test_handout.py":
                problems.append(f"{relative}: {pattern}")
        if relative.startswith("assignments/") and "colab.research.google.com/github/" in text:
            problems.append(f"{relative}: a Colab badge (the release stamps it)")
    assert not problems, "placeholders or the instructors' repository named:\n" + "\n".join(
        problems
    )


def released_notebook(module: str | None = "pretext_tasks") -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Assignment 3: Pretext tasks\n\nLabels are expensive."),
        nbformat.v4.new_code_cell(setup_cell_source(module)),
        nbformat.v4.new_code_cell("print(S.impl.hello())"),
    ]
    return nbformat.writes(nb).encode()


def test_release_stamps_the_identity_into_badge_and_set_up_cell():
    hub = release.CourseIdentity("replearn", "0.1.0", "https://github.com/uni/rl-handout", "v0.1.0")
    stamped = nbformat.reads(
        release.stamp_notebook(released_notebook(), "assignments/03_x.ipynb", hub).decode(), 4
    )
    title, blank, badge = stamped.cells[0].source.splitlines()[:3]
    assert title == "# Assignment 3: Pretext tasks" and not blank
    assert badge.endswith(
        "(https://colab.research.google.com/github/uni/rl-handout/blob/v0.1.0/assignments/03_x.ipynb)"
    )
    setup = stamped.cells[1].source
    assert setup == setup_cell_source(
        "pretext_tasks", handout_url=hub.handout_url, handout_ref="v0.1.0"
    )
    assert (
        '!git clone -q --depth 1 --branch v0.1.0 https://github.com/uni/rl-handout "{content}/rl-handout"'
        in setup
    )

    plain = release.CourseIdentity("replearn", "0.1.0")
    same = nbformat.reads(
        release.stamp_notebook(released_notebook(None), "a.ipynb", plain).decode(), 4
    )
    assert (
        same.cells[1].source == setup_cell_source(None) and "git clone" not in same.cells[1].source
    )
    assert "colab-badge" not in same.cells[0].source, "no repository: no badge"

    edited = released_notebook().replace(b"# Set-up.", b"# My own set-up.")
    with pytest.raises(release.ReleaseError, match="setup_cell_source"):
        release.stamp_notebook(edited, "assignments/03_x.ipynb", plain)


def test_setup_cell_installs_from_the_handout_and_keeps_colabs_stack():
    cell = setup_cell_source("pretext_tasks")
    assert "%pip" not in cell and "git+" not in cell and "make" not in cell
    assert "install.py" in cell and "--colab" in cell and "REPLEARN_CONTENT_DIR" in cell
    for url in ("", "https://github.com/uni/rl-handout"):  # valid Python, the shell lines aside
        python = re.sub(
            r"^(\s*)!.*$",
            r"\1pass",
            setup_cell_source("x", handout_url=url, handout_ref="v1"),
            flags=re.M,
        )
        compile(python, "<setup cell>", "exec")


def test_handout_zip_is_named_by_course_version_and_date(tmp_path, monkeypatch):
    identity = release.CourseIdentity("replearn", "0.1.0")
    assert (
        release.handout_zip_name(identity, datetime.date(2026, 9, 1))
        == "replearn-student-0.1.0-2026-09-01.zip"
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1788220800")  # 2026-09-01 UTC
    assert release.handout_zip_name(identity).endswith("-2026-09-01.zip")
    # `make release` passes a folder: the zip goes inside it, never to a file named after it
    from test_release import make_repo

    repo = make_repo(tmp_path / "repo")
    release.write_starters(repo)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "instructor.release",
            "--repo",
            str(repo),
            "zip",
            "--no-notebooks",
            "--out",
            str(repo / "build" / "release"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1788220800"},
    )
    assert done.returncode == 0, done.stderr
    written = repo / "build" / "release" / "replearn-student-0.1.0-2026-09-01.zip"
    assert written.is_file() and str(written) in done.stdout
    assert zipfile.ZipFile(written).namelist()[0].startswith("replearn-student-0.1.0/")


def test_installer_commands(tmp_path):
    """What ``install.py`` runs: a venv and the pinned install; PyTorch's CPU index first with
    --cpu; on Colab, pip constrained to every version the runtime has."""
    handout = tmp_path / "handout"
    (handout / "wheels").mkdir(parents=True)
    shutil.copyfile(INSTALLER, handout / "install.py")
    shutil.copyfile(REPO / "constraints.txt", handout / "constraints.txt")
    wheel = handout / "wheels" / "replearn-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")

    def dry(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, str(handout / "install.py"), "--dry-run", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return [line[2:] for line in done.stdout.splitlines() if line.startswith("$ ")]

    venv = handout / ".venv"
    local = dry()
    assert local[0] == f"{sys.executable} -m venv {venv}"
    assert local[1] == (
        f"{venv}/bin/python -m pip install --constraint {handout}/constraints.txt "
        f"'{wheel}[notebooks]'"
    )
    cpu = dry("--cpu")
    assert "--index-url https://download.pytorch.org/whl/cpu torch torchvision" in cpu[1]
    assert cpu[2] == local[1]
    colab = dry("--colab")
    assert len(colab) == 1 and colab[0].startswith(
        f"{sys.executable} -m pip install -q --constraint "
    )  # a dry run does not fail, so no second try
    assert colab[0].endswith(f"'{wheel}[assignments]'")

    spec = importlib.util.spec_from_file_location("handout_install", INSTALLER)
    installer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer)
    pins = installer.runtime_pins().splitlines()
    version = importlib.metadata.version
    assert f"torch=={version('torch')}" in pins and f"numpy=={version('numpy')}" in pins
    assert not [p for p in pins if p.startswith("replearn==")], "a newer hand-out may replace it"
    assert installer.runtime_pins({"torch"}).splitlines() == [f"torch=={version('torch')}"]


def test_student_readme_is_the_handouts_and_the_repository_points_to_it():
    readme = HANDOUT_README.read_text()
    for command in (
        "python3 install.py",
        "python3 install.py --cpu",
        "python -m autograder check pretext_tasks",
        "python -m replearn.submit pretext_tasks",
        "REPLEARN_CHECKPOINT_DIR",
        "Runtime > Change runtime type",
    ):
        assert command in readme, command
    for instructors_only in (
        "make ",
        "solutions/",
        "tests/",
        "benchmarks/",
        "docs/internals",
        "pyproject",
    ):
        assert instructors_only not in readme, f"{instructors_only!r}: not in the hand-out"
    for path in sorted((REPO / "assignments").glob("*.ipynb")):
        assert f"`{path.name}`" in readme, path.name
    students = (REPO / "README.md").read_text().split("## For students")[1].split("\n## ")[0]
    assert "handout/README.md" in students


# Imports the hand-out's install does not need to provide, and why.
NOT_INSTALLED = {
    "IPython": "the Jupyter kernel the notebook runs in",
    "google": "Colab's own package",
    "lightly": "an optional parity check of notebook 04, skipped when absent",
    "nbclient": "replearn.notebook.run_notebook, the course team's notebook runner",
    "tomli": "Python 3.10's tomllib, for the release tooling",
}


def project_requirements(extras: list[str]) -> list[str]:
    """The requirement strings of pyproject's dependencies and ``extras`` (self-references expanded)."""
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            for line in project["optional-dependencies"][extra]:
                requirement = Requirement(line)
                if requirement.name == "replearn":
                    todo += sorted(requirement.extras)
                else:
                    found.append(line)
    return found


def top_level_imports(source: str) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_of_the_notebooks_is_installed_by_the_handout():
    """What the notebooks, the student modules and the course library import is installed by
    the Colab install (extra ``assignments``; the local one adds Jupyter to it)."""
    from handout_env import closure

    names = set()
    for path in sorted((REPO / "assignments").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":  # shell and magic lines aside
                names |= top_level_imports(
                    re.sub(r"^(\s*)[!%].*$", r"\1pass", cell.source, flags=re.M)
                )
    for path in sorted((REPO / "solutions").glob("*.py")) + sorted(
        (REPO / "replearn").glob("*.py")
    ):
        names |= top_level_imports(path.read_text())
    from packaging.requirements import Requirement

    installed = {
        d.metadata["Name"].lower().replace("_", "-")
        for d in closure(tuple(Requirement(r).name for r in project_requirements(["assignments"])))
    }
    providers = importlib.metadata.packages_distributions()
    missing = []
    for name in sorted(names - set(sys.stdlib_module_names) - {"replearn", "autograder"}):
        dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
        if not dists & installed and name not in NOT_INSTALLED:
            missing.append(f"{name} (from {', '.join(sorted(dists)) or 'no installed package'})")
    assert not missing, "not installed by replearn[assignments]: " + ", ".join(missing)
    local = project_requirements(["notebooks"])
    assert {"jupyter", "ipykernel"} <= {Requirement(r).name for r in local}


# --------------------------------------------------------------------------------------------
# The hand-out on its own (slow): build it, unpack it into an empty folder, follow the README
# --------------------------------------------------------------------------------------------


def readme_commands() -> list[str]:
    """The shell commands of the student README's code blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", HANDOUT_README.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_handout_walks_its_readme_in_an_empty_folder(built_handout, tmp_path):
    from handout_env import ARRAY_STACK, clean_env, frozen, make_venv

    started = time.perf_counter()
    home = tmp_path / "student"
    home.mkdir()
    with zipfile.ZipFile(built_handout) as archive:
        archive.extractall(home)
    (folder,) = home.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE",
        "MANIFEST.txt",
        "README.md",
        "assignments",
        "constraints.txt",
        "data",
        "install.py",
        "starter_code",
        "wheels",
    ]
    manifest = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.txt"], cwd=folder)
    assert manifest.returncode == 0, "MANIFEST.txt does not match the files"

    # the student's machine already has Python's array stack (seeded: no 2 GB download here)
    make_venv(folder / ".venv", ARRAY_STACK)
    python = folder / ".venv" / "bin" / "python"
    before = frozen(python)
    commands = readme_commands()
    set_up = commands[0]
    assert set_up == "python3 install.py"
    env = clean_env()
    done = subprocess.run(
        [sys._base_executable, *set_up.split()[1:]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert frozen(python) == before, "the installer replaced torch, torchvision or numpy"
    assert "--cpu" in commands[1] and ".venv/bin/jupyter lab assignments" in commands

    # check: the public tests run on the starter and say what is missing
    check = next(c for c in commands if c.startswith("python -m autograder check "))
    done = subprocess.run(
        [str(python), *check.split()[1:]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"Total: 0 / [1-9]\d*", done.stdout), done.stdout[-2000:]
    assert "NotImplementedError: Implement" in done.stdout

    # run: the notebook's set-up cell in the environment's own Jupyter, as `jupyter lab` would
    source = nbformat.read(folder / "assignments" / "03_pretext_tasks.ipynb", as_version=4)
    first = next(c for c in source.cells if c.cell_type == "code")
    single = folder / "assignments" / "setup_only.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[first], metadata=source.metadata), single)
    done = subprocess.run(
        [
            str(folder / ".venv" / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            str(single),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = nbformat.read(single, as_version=4).cells[0].outputs
    said = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "| preset cpu-quick | device cpu |" in said, said
    assert "data cifar10-5k (shipped with replearn)" in said, said
    assert (
        f"your implementation (starter) from {folder / 'starter_code' / 'pretext_tasks.py'}" in said
    )
    print(f"hand-out walk: {time.perf_counter() - started:.0f} s")


def test_readme_lists_the_commands_the_walk_runs():
    commands = readme_commands()
    assert commands[0] == "python3 install.py" and commands[1] == "python3 install.py --cpu"
    assert any(c.startswith("python -m autograder check ") for c in commands)
    assert json.dumps(commands)  # plain strings
