"""Every assignment notebook executes end to end, for real, in the `smoke` preset.

They run on the bare path, as on a fresh clone on a laptop without network: ``smoke`` and
``cpu-quick`` use only the working sets that ship inside the package. Each notebook runs in a
kernel that has no ``REPLEARN_DATA_DIR``, an empty cache, and no way out: the proxies point at a
closed local port and a ``sitecustomize`` refuses every socket connection that does not stay on
this machine (the kernel itself talks to its client over loopback). A notebook that needs a
folder or a download fails here, and each must say that its data came from the package.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replearn.notebook import run_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "assignments").glob("*.ipynb"))

# Imported by every Python process of the kernel's environment: outside connections fail at once.
NO_NETWORK = """
import ipaddress
import socket

_connect = socket.socket.connect


def _local_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            local = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local:
            raise OSError(101, f"network refused by the offline test: {address}")
    return _connect(self, address)


socket.socket.connect = _local_only
"""


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a machine with no data folder and no network."""
    guard = tmp_path_factory.mktemp("no-network")
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    cache = tmp_path_factory.mktemp("empty-cache")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
    path = os.pathsep.join(p for p in (str(guard), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "REPLEARN_DATA_DIR": "",
        "REPLEARN_CHECKPOINTS": "",  # the course checkpoints: only what the package carries
        "REPLEARN_CACHE": str(cache),
        "PYTHONPATH": path,
        **{name: closed for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
        "no_proxy": "",
        "NO_PROXY": "",
    }


def test_the_offline_guard_refuses_outside_connections(offline_env):
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('93.184.216.34', 80), timeout=5)\n"
        "except OSError as err:\n"
        "    print('refused' if 'offline test' in str(err) else f'other: {err}')\n"
        "else:\n"
        "    print('connected')\n"
    )
    env = {**os.environ, **offline_env}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "refused", done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_preset_offline_with_reference(path, offline_env):
    out = REPO / "build" / "test-notebooks" / path.name
    run = run_notebook(
        path, out, preset="smoke", impl="solution", timeout=300, extra_env=offline_env
    )
    assert run.ok, f"{path.name} failed offline after {run.seconds:.0f} s:\n{run.error}"
    assert run.summary.get("preset") == "smoke", "the notebook must end with S.finish()"
    notes = run.summary.get("data") or []
    assert notes, f"{path.name} did not say which data it used"
    for note in notes:
        if note.startswith("course checkpoint:"):  # the course's weights: the package's, pinned
            assert "the course package's copy" in note and "verified" in note, (
                f"{path.name} loaded a course checkpoint that does not ship with the package: {note}"
            )
            assert "not pinned" not in note, (
                f"{path.name}: the package's bundle is not pinned: {note}"
            )
            continue
        assert "shipped with replearn" in note, (
            f"{path.name} used data that does not ship with the package: {note}"
        )


def test_runner_reports_a_failing_cell_without_raising(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
    ]
    src = tmp_path / "broken.ipynb"
    nbformat.write(nb, src)
    run = run_notebook(src, tmp_path / "out" / "broken.ipynb", preset="smoke", timeout=60)
    assert not run.ok and "boom" in run.error
    assert (tmp_path / "out" / "broken.ipynb").exists(), "the executed copy is kept for reading"


def test_runner_passes_preset_and_collects_the_summary(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from replearn import notebook, presets\nimport torch\n"
            "S = notebook.Session('demo', presets.get_preset(), torch.device('cpu'), 0, None, 'none',"
            " torch.Generator())\n"
            "S.record('accuracy', 0.5, '>= 0.4', at_least=0.4)\nS.finish()"
        )
    ]
    src = tmp_path / "tiny.ipynb"
    nbformat.write(nb, src)
    run = run_notebook(src, tmp_path / "out" / "tiny.ipynb", preset="smoke", timeout=60)
    assert run.ok, run.error
    assert run.summary["preset"] == "smoke"
    assert run.summary["records"][0] == {
        "name": "accuracy",
        "value": 0.5,
        "promised": ">= 0.4",
        "ok": True,
    }


ENTRY_POINT_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem.split("_")[0] in ("04", "05", "06")]


@pytest.mark.slow
@pytest.mark.parametrize("path", ENTRY_POINT_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_its_full_preset_path_through_the_entry_point(path):
    """The cells the ``full`` preset takes (``S.pretrain``: replearn.pretrain's train-or-load
    runs, checkpoints under the course folder), executed in smoke with the switch that forces
    them."""
    from replearn.notebook import ENTRY_POINT_ENV

    for stale in (REPO / "checkpoints" / "pretrain").glob("*-smoke-seed0.pt"):
        stale.unlink()  # train, not load, the runs of an earlier test session
    out = REPO / "build" / "test-notebooks" / f"{path.stem}-entry-point.ipynb"
    run = run_notebook(
        path, out, preset="smoke", impl="solution", timeout=300, extra_env={ENTRY_POINT_ENV: "1"}
    )
    assert run.ok, f"{path.name} failed after {run.seconds:.0f} s:\n{run.error}"
    executed = out.read_text()
    assert "[load_or_pretrain]" in executed and "torchrun --nproc_per_node N" in executed


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_a_fake_gpu_in_smoke_preset(path, tmp_path):
    """Colab's road without a GPU: the notebook on ``cuda``, under CUDA's device rules.

    ``tests/fakecuda.py`` is installed before the first cell by an IPython startup file (a
    temporary ``IPYTHONDIR``) and ``REPLEARN_DEVICE=cuda`` puts the session on the fake GPU, so
    a CPU tensor meeting a CUDA one, a CPU generator drawing for a CUDA tensor or ``.numpy()``
    of a CUDA tensor stops the notebook as a real GPU would.
    """
    import fakecuda

    out = REPO / "build" / "test-notebooks" / f"{path.stem}-fakecuda.ipynb"
    env = fakecuda.kernel_env(tmp_path / "ipython")
    run = run_notebook(path, out, preset="smoke", impl="solution", timeout=300, extra_env=env)
    assert run.ok, f"{path.name} failed on the fake GPU after {run.seconds:.0f} s:\n{run.error}"
    assert run.summary.get("device") == "cuda", "the session must run on the (fake) GPU"
    assert run.summary.get("preset") == "smoke"
