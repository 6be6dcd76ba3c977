"""Attack: A correct module with a pickle disguised as classifier.safetensors."""
import torch

def scaled_softmax(x, temperature):
    z = x / temperature
    z = z - z.max(dim=1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=1, keepdim=True)


def pairwise_sq_dists(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def softmax_regression_loss(logits, labels):
    log_z = torch.logsumexp(logits, dim=1)
    picked = logits.gather(1, labels[:, None])[:, 0]
    return (log_z - picked).mean()


def make_classifier(dim, classes):
    return torch.nn.Linear(dim, classes)
