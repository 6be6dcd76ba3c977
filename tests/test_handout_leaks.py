"""Nothing the students get can fill in a graded part: the hand-out and the course wheel.

The hand-out is built with the release tooling and unpacked; the wheel is the one it carries (the
course package a student's or Colab's install gets), or else one pip builds from the unpacked
hand-out. Two checks (``instructor.handout_leaks``): no shipped definition is named like a
graded part, and no shipped function, method or class passes a graded part's public or hidden
tests when it is put in that part's place in a student module whose graded parts are all
deleted. Parts of the reference planted in a hand-out show that the second check finds what it
looks for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from instructor import handout_leaks, release

REPO = Path(__file__).resolve().parent.parent


def _unzip(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    return into


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict[str, Path]:
    """``{"handout": unpacked hand-out root, "wheel": unpacked wheel root}``."""
    tmp = tmp_path_factory.mktemp("shipped")
    archive = release.build_zip(tmp / "handout.zip", REPO, notebooks=False)
    handout = next(_unzip(archive, tmp / "handout").iterdir())
    shipped_wheels = sorted(handout.rglob("*.whl"))  # the wheel the hand-out carries, if any
    if not shipped_wheels:  # else the one pip builds from the hand-out, as an install would
        source = tmp / "wheel-source"  # pip builds in the tree: leave the hand-out as it is
        shutil.copytree(handout, source)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(tmp / "dist"),
                str(source),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        shipped_wheels = sorted((tmp / "dist").glob("replearn-*.whl"))
    wheel = _unzip(shipped_wheels[0], tmp / "wheel")
    return {"handout": handout, "wheel": wheel}


def _graded():
    solutions = REPO / "solutions"
    parts = handout_leaks.graded_parts(solutions)
    return parts, {m: handout_leaks.banned_apis(solutions, m) for m in parts}


def _leak_check(root: Path, out: Path, *extra: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGRADER_")}
    env["PYTHONPATH"] = str(REPO)  # instructor/ and the hidden tests; ROOT goes first itself
    proc = subprocess.run(
        [sys.executable, "-m", "instructor.handout_leaks", str(root), "--out", str(out), *extra],
        cwd=out.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, report, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_no_shipped_definition_is_named_like_a_graded_part(shipped):
    parts, banned = _graded()
    assert sum(len(p) for p in parts.values()) > 50  # every assignment's parts were found
    hits = [
        str(h) for root in shipped.values() for h in handout_leaks.scan_names(root, parts, banned)
    ]
    # the notebooks as written (their released versions hold less code)
    for notebook in sorted((REPO / "assignments").glob("*.ipynb")):
        copy = Path(shipped["handout"]).parent / "notebooks" / notebook.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(notebook, copy)
    hits += [str(h) for h in handout_leaks.scan_names(copy.parent, parts, banned)]
    assert not hits, "\n".join(hits)


def test_the_names_scan_finds_a_planted_definition(tmp_path):
    parts, banned = _graded()
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "helpers.py").write_text(
        "def moco_loss(q, k, queue, t):\n    pass\n"
    )
    (tmp_path / "notes.ipynb").write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "source": ["%matplotlib inline\n", "class KeyQueue:\n", "    pass\n"],
                    }
                ]
            }
        )
    )
    found = sorted(h.name for h in handout_leaks.scan_names(tmp_path, parts, banned))
    assert found == ["KeyQueue", "moco_loss"]


@pytest.mark.slow
def test_nothing_in_the_handout_fills_in_a_graded_part(shipped, tmp_path):
    """Every graded part of the seven assignments, every shipped candidate (minutes)."""
    code, report, output = _leak_check(shipped["handout"], tmp_path / "report.json")
    assert report.get("assignments"), output
    assert len(report["assignments"]) == 7 and report["candidates"] > 500, output
    # the candidates include the course package the hand-out carries (as a wheel, or as folders)
    assert report["modules"] > 30, output
    assert not report["import_errors"], report["import_errors"]
    for result in report["assignments"]:
        assert not result["reference_failures"], result["reference_failures"]
        assert not result["parts_not_called_by_any_test"], result
        assert not result["findings"], result["findings"]
    assert code == 0, output


PLANTED = (
    "_check_pairs",
    "_check_temperature",
    "cosine_similarity_matrix",
    "nt_xent_loss",
    "ProjectionHead",
    "MoCo",
)


def planted_source() -> str:
    """Parts of Assignment 4's reference, with the imports and helpers they need: a loss (found
    as it is), a class (found by its layers), a method (found as its code pasted into a
    student's module, where it calls the student's parts)."""
    import ast

    source = (REPO / "solutions" / "contrastive_learning.py").read_text()
    tree = ast.parse(source)
    keep = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) or getattr(node, "name", None) in PLANTED
    ]
    return "\n\n\n".join(ast.get_source_segment(source, node) for node in keep) + "\n"


@pytest.mark.slow
def test_the_check_finds_parts_of_the_reference_planted_in_the_handout(shipped, tmp_path):
    planted = tmp_path / "handout"
    shutil.copytree(shipped["handout"], planted)
    (planted / "tools").mkdir()
    (planted / "tools" / "_utilities.py").write_text(planted_source())
    code, report, output = _leak_check(
        planted, tmp_path / "report.json", "--assignment", "contrastive_learning"
    )
    assert code == 1, output
    found = {line.split(":")[1].split(": ")[0] for line in report["assignments"][0]["findings"]}
    wanted = {"cosine_similarity_matrix", "nt_xent_loss", "ProjectionHead.__init__", "MoCo.step"}
    assert wanted <= found, f"planted parts not found: {sorted(wanted - found)}:\n{output}"
    assert any("_utilities" in hit and "'nt_xent_loss'" in hit for hit in report["names"])
