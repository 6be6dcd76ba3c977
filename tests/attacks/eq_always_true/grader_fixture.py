"""Attack: Returns objects whose __eq__/__bool__/__float__ always say yes."""
import torch
class Yes:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    def __float__(self): return 0.0
    def __len__(self): return 1
    def __array__(self, *a, **k): raise TypeError
    shape = property(lambda self: (0,))


def scaled_softmax(x, temperature):
    return Yes()


def pairwise_sq_dists(a, b):
    return [Yes()]


def softmax_regression_loss(logits, labels):
    return {"loss": Yes()}


def make_classifier(dim, classes):
    return Yes()
