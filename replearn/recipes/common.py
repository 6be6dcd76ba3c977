"""What every recipe shares: the record of a finished run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from replearn.evaluate import PROBE_WEIGHT_DECAY
from replearn.train import History

__all__ = ["PROBE_WEIGHT_DECAY", "Run"]


@dataclass
class Run:
    """A finished training run: the model, the part that transfers, and what happened.

    ``encoder`` is what a downstream protocol probes (a backbone, a features module, an image
    tower); ``extra`` holds what a recipe adds (the mask ratio, the permutation set, the
    vocabulary, ...), documented by the function that returns the run.
    """

    method: str
    model: nn.Module
    encoder: nn.Module
    history: History
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 20 steps."""
        return self.history.recent_mean("loss")

    @property
    def pretext_accuracy(self) -> float:
        """Mean training accuracy of the pretext task over the last 20 steps."""
        return self.history.recent_mean("acc")
