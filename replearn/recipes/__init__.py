"""One recipe per assignment: the experiments around the student's method.

A student module (``solutions/<name>.py``, or the student's copy in ``starter_code/``) holds the
method, in the lecture's order. Its recipe, ``replearn.recipes.<name>``, holds what is not the
student's job: the settings per preset (a frozen dataclass with ``from_preset``), the training
drivers and the evaluation protocol. Every function that runs one of the student's parts takes
the student's module as its first argument, so the notebook, the benchmarks, the comparison
(``replearn.compare``) and the entry point (``replearn.pretrain``) run the same recipe on the
student's code or the reference's::

    from replearn import impl
    from replearn.recipes import contrastive_learning as recipe

    cl = impl.load("contrastive_learning")  # the student's module, or the reference
    cfg = recipe.ContrastiveConfig.from_preset(preset)
    run = recipe.pretrain(cl, "simclr", images, labels, cfg)

A recipe imports the course library only; it never imports ``solutions/`` or the grader.
"""

import importlib
from types import ModuleType

from replearn.recipes.common import PROBE_WEIGHT_DECAY, Run

ASSIGNMENTS = (
    "transfer_learning",
    "autoencoders",
    "pretext_tasks",
    "generative_pretext",
    "contrastive_learning",
    "masked_autoencoders",
    "clip_zero_shot",
)

__all__ = ["ASSIGNMENTS", "PROBE_WEIGHT_DECAY", "Run", *ASSIGNMENTS]


def __getattr__(name: str) -> ModuleType:
    """``recipes.<assignment>`` imports that recipe on first use."""
    if name in ASSIGNMENTS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
