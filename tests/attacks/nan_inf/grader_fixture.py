"""Attack: Returns NaN and Inf of the right shapes and dtypes."""
import torch


def scaled_softmax(x, temperature):
    return torch.full_like(x, float("nan"))


def pairwise_sq_dists(a, b):
    return torch.full((a.shape[0], b.shape[0]), float("inf"))


def softmax_regression_loss(logits, labels):
    return torch.tensor(float("nan"))


def make_classifier(dim, classes):
    raise NotImplementedError
