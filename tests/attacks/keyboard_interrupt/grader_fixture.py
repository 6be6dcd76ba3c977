"""Attack: Raises KeyboardInterrupt from every graded function."""
import torch

def scaled_softmax(x, temperature):
    raise KeyboardInterrupt


def pairwise_sq_dists(a, b):
    raise KeyboardInterrupt


def softmax_regression_loss(logits, labels):
    raise KeyboardInterrupt


def make_classifier(dim, classes):
    raise KeyboardInterrupt
