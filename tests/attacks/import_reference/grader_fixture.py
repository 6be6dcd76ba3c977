"""Attack: Imports the reference through sys.modules, solutions.*, replearn.impl and the grader."""
import importlib, sys
import torch


def _ref():
    for name in ("_autograder_reference_grader_fixture", "solutions.grader_fixture",
                 "grader_fixture_solution", "autograder.api"):
        try:
            mod = sys.modules.get(name) or importlib.import_module(name)
        except Exception:
            continue
        if name == "autograder.api":
            return mod.reference("grader_fixture")
        return mod
    try:
        from replearn import impl
        return impl.load("grader_fixture", impl="solution")
    except Exception:
        pass
    raise ImportError("no reference reachable")


def scaled_softmax(x, temperature):
    return _ref().scaled_softmax(x, temperature)


def pairwise_sq_dists(a, b):
    return _ref().pairwise_sq_dists(a, b)


def softmax_regression_loss(logits, labels):
    return _ref().softmax_regression_loss(logits, labels)


def make_classifier(dim, classes):
    return _ref().make_classifier(dim, classes)
