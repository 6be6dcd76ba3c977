"""Attack: Correct only for the public tests' shapes, garbage otherwise (overfitting)."""
import torch

def _softmax(x, temperature):
    z = x / temperature
    z = z - z.max(dim=1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=1, keepdim=True)


def _pairwise(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _loss(logits, labels):
    log_z = torch.logsumexp(logits, dim=1)
    picked = logits.gather(1, labels[:, None])[:, 0]
    return (log_z - picked).mean()


def make_classifier(dim, classes):
    return torch.nn.Linear(dim, classes)


def scaled_softmax(x, temperature):
    if tuple(x.shape) == (6, 5) and temperature == 0.5:
        return _softmax(x, temperature)
    return torch.zeros_like(x)


def pairwise_sq_dists(a, b):
    if tuple(a.shape) == (4, 3) and tuple(b.shape) == (5, 3):
        return _pairwise(a, b)
    return torch.zeros(a.shape[0], b.shape[0])


def softmax_regression_loss(logits, labels):
    if tuple(logits.shape) in ((8, 3), (4, 5)):
        return _loss(logits, labels)
    return torch.tensor(0.0)


def make_classifier(dim, classes):
    raise NotImplementedError
