"""Attack: Raises a custom BaseException subclass and GeneratorExit."""
import torch
class Escape(BaseException):
    pass

def scaled_softmax(x, temperature):
    raise Escape('stop the grader')


def pairwise_sq_dists(a, b):
    raise Escape('stop the grader')


def softmax_regression_loss(logits, labels):
    raise GeneratorExit


def make_classifier(dim, classes):
    raise GeneratorExit
