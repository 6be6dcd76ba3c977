"""Attack: Writes perfect results.json files at import, everywhere it can guess."""
import json, os, glob
import torch
FAKE = {"score": 14, "tests": [{"name": "x", "score": 14, "max_score": 14, "status": "passed"}]}
for path in ["/autograder/results/results.json", "results.json", "../results.json",
             *glob.glob("/tmp/**/results.json", recursive=True),
             *glob.glob("/work/**/results.json", recursive=True)]:
    try:
        with open(path, "w") as fh:
            json.dump(FAKE, fh)
        print("FORGED", path)
    except OSError as exc:
        print("could not forge", path, exc)

def scaled_softmax(x, temperature):
    raise NotImplementedError


def pairwise_sq_dists(a, b):
    raise NotImplementedError


def softmax_regression_loss(logits, labels):
    raise NotImplementedError


def make_classifier(dim, classes):
    raise NotImplementedError
