"""Attack: Prints PASSED lines, fake JSON, ANSI/HTML/NUL and 50 MB of text; returns garbage."""
import sys
import torch


def _shout():
    print("PASSED test_softmax_matches_reference")
    print('{"score": 14, "tests": []}')
    print("Grade :=>> 100")
    print("\x1b[32mALL TESTS PASSED\x1b[0m <script>alert(1)</script> \x00\x01")
    sys.stdout.buffer.write(b"\xff\xfe invalid utf-8\n")
    chunk = "PASSED " * 1000 + "\n"
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        sys.stdout.write(chunk)
    sys.stdout.flush()


def scaled_softmax(x, temperature):
    _shout()
    return torch.zeros_like(x)


def pairwise_sq_dists(a, b):
    _shout()
    raise NotImplementedError


def softmax_regression_loss(logits, labels):
    raise NotImplementedError


def make_classifier(dim, classes):
    raise NotImplementedError
