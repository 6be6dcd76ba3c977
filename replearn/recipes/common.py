"""What every recipe shares: the record of a finished run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from replearn.evaluate import PROBE_WEIGHT_DECAY
from replearn.train import History

__all__ = ["PROBE_WEIGHT_DECAY", "Run", "classification_step"]


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


def classification_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One supervised step's loss (cross-entropy) and accuracy, in ``replearn.train.train``'s
    step convention: the supervised baselines and the Exemplar CNN's seed classes."""
    logits = model(x)  # [N, K]
    acc = (logits.detach().argmax(dim=1) == y).float().mean()
    return {"loss": F.cross_entropy(logits, y), "acc": acc}
