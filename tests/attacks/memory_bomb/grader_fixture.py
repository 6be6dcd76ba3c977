"""Attack: Allocates until memory runs out: a 400 GB tensor, then bytearray growth."""
import torch


def scaled_softmax(x, temperature):
    return torch.empty(10**11)


def pairwise_sq_dists(a, b):
    blocks = []
    while True:
        blocks.append(bytearray(256 * 1024 * 1024))


def softmax_regression_loss(logits, labels):
    return torch.ones(10**10, dtype=torch.float64).sum()


def make_classifier(dim, classes):
    raise NotImplementedError
