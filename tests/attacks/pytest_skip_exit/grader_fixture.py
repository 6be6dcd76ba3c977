"""Attack: Calls pytest.skip, pytest.exit and pytest.xfail from graded functions."""
import pytest
import torch


def scaled_softmax(x, temperature):
    pytest.skip("nothing to see")


def pairwise_sq_dists(a, b):
    pytest.exit("bye", returncode=0)


def softmax_regression_loss(logits, labels):
    pytest.xfail("expected")


def make_classifier(dim, classes):
    pytest.skip("skip me")
