"""Attack: Looks for expected tensors, the reference or a nonce in caller frames and gc."""
import gc, sys
import torch


def _steal(shape):
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(shape):
                return value
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and tuple(obj.shape) == tuple(shape):
            return obj
    return torch.zeros(shape)


def scaled_softmax(x, temperature):
    return _steal(x.shape)


def pairwise_sq_dists(a, b):
    return _steal((a.shape[0], b.shape[0]))


def softmax_regression_loss(logits, labels):
    return _steal(())


def make_classifier(dim, classes):
    raise NotImplementedError
