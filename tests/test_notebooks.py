"""Every assignment notebook executes end to end, for real, in the `smoke` preset."""

from pathlib import Path

import pytest

from replearn.notebook import run_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "assignments").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_preset_with_reference(path):
    out = REPO / "build" / "test-notebooks" / path.name
    run = run_notebook(path, out, preset="smoke", impl="solution", timeout=300)
    assert run.ok, f"{path.name} failed after {run.seconds:.0f} s:\n{run.error}"
    assert run.summary.get("preset") == "smoke", "the notebook must end with S.finish()"
    assert run.summary.get("data"), "the notebook must say which data it used"


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
    run = run_notebook(path, out, preset="smoke", impl="solution", timeout=300,
                       extra_env={ENTRY_POINT_ENV: "1"})  # fmt: skip
    assert run.ok, f"{path.name} failed after {run.seconds:.0f} s:\n{run.error}"
    executed = out.read_text()
    assert "[train_or_load]" in executed and "torchrun --nproc_per_node N" in executed


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
