"""Attack: Returns shapes that would pass a broadcasting comparison (row means, (1,), (N, 1))."""
import torch


def scaled_softmax(x, temperature):
    return torch.full((x.shape[0], 1), 1.0 / x.shape[1])


def pairwise_sq_dists(a, b):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return d.mean().reshape(1, 1)


def softmax_regression_loss(logits, labels):
    log_z = torch.logsumexp(logits, dim=1)
    picked = logits.gather(1, labels[:, None])[:, 0]
    return (log_z - picked).mean().reshape(1)


def make_classifier(dim, classes):
    raise NotImplementedError
