"""Isolation of the worker: uid, hidden folders, network, limits, killing the whole tree.

Run as root (this machine and CI) the worker gets namespaces and an unprivileged uid; as a
normal user only the process-group, rlimit and timeout checks apply.
"""

import os
import subprocess
from pathlib import Path

import pytest
import torch

from autograder.sandbox import Sandbox, isolation_mode

REPO = Path(__file__).resolve().parent.parent
FULL = isolation_mode() == "full"

PROBE_MODULE = """
import os, socket, sys, time, json


def identity():
    return [os.getuid(), os.getgid(), os.getgroups(), os.getpid(), os.getcwd(), dict(os.environ)]


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(64).decode("latin-1")
    except OSError as exc:
        return type(exc).__name__


def write(path):
    try:
        with open(path, "w") as fh:
            fh.write("{}")
        return "written"
    except OSError as exc:
        return type(exc).__name__


def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__


def daemon(marker):
    import ctypes
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME
            while True:
                time.sleep(0.05)
        os._exit(0)
    return "spawned"


def hang():
    while True:
        pass


def big_file():
    with open("big.bin", "wb") as fh:
        fh.write(b"x" * (100 * 1024 * 1024))
    return "written"


def double(x):
    return x * 2
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    sub = tmp_path_factory.mktemp("sub")
    (sub / "probe_mod.py").write_text(PROBE_MODULE)
    secret = tmp_path_factory.mktemp("secret")
    (secret / "hidden.txt").write_text("CANARY-7f3a")
    os.chmod(secret, 0o755)
    (secret / "results.json").write_text("{}")
    sandbox = Sandbox(sub, ["probe_mod.py"], [secret, REPO / "autograder", REPO / "tests"])
    sandbox.secret = secret
    yield sandbox
    sandbox.close()


def call(box, fn, *args, timeout=10.0):
    out = box.call("probe_mod", fn, args, timeout=timeout)
    return out


def test_round_trip_and_fresh_process(box):
    out = call(box, "double", torch.arange(3.0))
    assert out.status == "ok" and torch.equal(out.value, torch.tensor([0.0, 2.0, 4.0]))


def test_worker_identity_and_clean_environment(box):
    os.environ["AUTOGRADER_TEST_TOKEN"] = "SECRET-TOKEN"
    try:
        uid, gid, groups, pid, cwd, env = call(box, "identity").value
    finally:
        del os.environ["AUTOGRADER_TEST_TOKEN"]
    assert "AUTOGRADER_TEST_TOKEN" not in env and "SECRET-TOKEN" not in str(env)
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "CUDA_VISIBLE_DEVICES",
        "MPLBACKEND",
        "HOME",
        "TMPDIR",
    }
    if FULL:
        assert (uid, gid, groups) == (65534, 65534, [])
        assert pid == 1  # PID 1 of its own namespace: killing it kills every descendant


@pytest.mark.skipif(not FULL, reason="needs root: mount namespace and uid drop")
def test_grader_files_and_results_are_out_of_reach(box):
    assert call(box, "read", str(box.secret / "hidden.txt")).value != "CANARY-7f3a"
    assert call(box, "read", str(REPO / "autograder" / "api.py")).value in (
        "FileNotFoundError",
        "PermissionError",
    )
    assert call(box, "write", str(box.secret / "results.json")).value != "written"
    assert (box.secret / "results.json").read_text() == "{}"


@pytest.mark.skipif(not FULL, reason="needs root: network namespace")
def test_no_network(box):
    assert call(box, "connect", "1.1.1.1", 53).value != "connected"
    assert call(box, "connect", "127.0.0.1", 22).value != "connected"


def test_timeout_kills_a_busy_loop(box):
    out = call(box, "hang", timeout=2)
    assert out.status == "timeout" and 1.9 < out.seconds < 6


def test_file_size_limit(box):
    out = call(box, "big_file")
    assert out.status in ("exception", "crashed") and out.value is None


@pytest.mark.skipif(not FULL, reason="a setsid daemon escapes a process group without a PID ns")
def test_double_forked_daemon_does_not_survive(box):
    out = call(box, "daemon", "ag-test-daemon")
    assert out.status == "ok"
    listing = subprocess.run(["ps", "-e", "-o", "comm="], capture_output=True, text=True)
    assert "ag-test-daemon" not in listing.stdout.split()


def test_a_hidden_sibling_does_not_hide_a_folder_whose_name_it_begins():
    """A sibling clone ``/x/course`` is hidden; ``/x/course-2026/.venv`` (this checkout's own
    interpreter) must stay visible, or the worker loses its site-packages and every lazily
    imported submodule (``skimage.color.colorconv``) fails to import."""
    from autograder.worker import _under

    hidden = ["/x/course", "/tmp/"]
    assert _under("/x/course", hidden) and _under("/x/course/solutions", hidden)
    assert _under("/tmp/a", hidden) and _under("/tmp", hidden)
    assert not _under("/x/course-2026/.venv/lib/python3.11/site-packages", hidden)
    assert not _under("/x/course2", hidden) and not _under("/tmpfiles", hidden)
