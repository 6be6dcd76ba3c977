"""Attack: Tries DNS, an outside TCP connection and localhost; reports what worked by failing."""
import socket
import torch


def _try_network():
    worked = []
    for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("127.0.0.1", 22), ("pypi.org", 443)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            worked.append(f"{host}:{port}")
        except OSError:
            pass
    return worked


def scaled_softmax(x, temperature):
    raise RuntimeError(f"network reachable: {_try_network()}")


def pairwise_sq_dists(a, b):
    raise NotImplementedError


def softmax_regression_loss(logits, labels):
    raise NotImplementedError


def make_classifier(dim, classes):
    raise NotImplementedError
