"""Attack: A correct solution that computes in float64, prints, sleeps and writes temp files."""
import os, tempfile, time
import torch


def _chat(name):
    print(f"[{name}] starting, working in {os.getcwd()}")
    for i in range(200):
        print(f"  step {i}: all fine")
    with open(os.path.join(tempfile.gettempdir(), "scratch.txt"), "w") as fh:
        fh.write("notes")
    time.sleep(0.3)


def scaled_softmax(x, temperature):
    _chat("softmax")
    z = x.double() / temperature
    return torch.softmax(z, dim=1).to(x.dtype)


def pairwise_sq_dists(a, b):
    _chat("pairwise")
    a64, b64 = a.double(), b.double()
    d = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2 * a64 @ b64.T
    return d.clamp_min(0).to(a.dtype)


def softmax_regression_loss(logits, labels):
    _chat("loss")
    with torch.no_grad():
        shift = logits.max(dim=1, keepdim=True).values
    z = logits - shift
    log_p = z - z.exp().sum(1, keepdim=True).log()
    return -log_p[torch.arange(len(labels)), labels].mean()


def make_classifier(dim, classes):
    return torch.nn.Linear(dim, classes)
