"""The public tests' recorded reference values (the student hand-out has no solutions).

`python -m autograder check` in the hand-out reads `autograder/tests/<module>/expected_public.agv`
instead of computing from `solutions/`. A stale recording would give students verdicts that the
grader does not give, so this test records afresh into a copy and compares with the committed one;
the same goes for the recorded outputs of the known mistakes (``mistakes_public.agv``).
"""

from pathlib import Path

import pytest
import torch

from autograder import api, codec, mistakes

REPO = Path(__file__).resolve().parent.parent
TESTS_ROOT = REPO / "autograder" / "tests"
MODULES = sorted(
    p.name
    for p in TESTS_ROOT.iterdir()
    if p.is_dir()
    and any(p.glob("test_public_*.py"))
    and "expected(" in "".join(f.read_text() for f in p.glob("test_public_*.py"))
)


CATALOGUED = sorted(m for m in MODULES if mistakes.catalogue_path(TESTS_ROOT / m).is_file())


def _table(path: Path) -> dict:
    _header, values = codec.decode(path.read_bytes())
    return values


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_recorded_values_match_the_reference(module, fresh_recordings):
    committed = TESTS_ROOT / module / api.EXPECTED_FILE
    assert committed.exists(), (
        f"run `python -m autograder record {module}` and commit {committed.name}"
    )
    fresh, old = _table(fresh_recordings / module / api.EXPECTED_FILE), _table(committed)
    assert sorted(fresh) == sorted(old), "public tests changed: re-record and commit"
    for key in fresh:
        _assert_same(fresh[key], old[key], key)


@pytest.mark.slow
@pytest.mark.parametrize("module", CATALOGUED)
def test_recorded_mistakes_match_the_catalogue(module, fresh_recordings):
    """The known mistakes' outputs on the public tests (``autograder.mistakes``), and their
    words, as ``python -m autograder record`` gives them today."""
    committed = TESTS_ROOT / module / mistakes.RECORD_FILE
    assert committed.exists(), (
        f"run `python -m autograder record {module}` and commit {committed.name}"
    )
    fresh, old = _table(fresh_recordings / module / mistakes.RECORD_FILE), _table(committed)
    assert fresh["mistakes"] == old["mistakes"], "the catalogue changed: re-record and commit"
    assert sorted(fresh["failures"]) == sorted(old["failures"]), "re-record and commit"
    for test in fresh["failures"]:
        ids = [e["id"] for e in fresh["failures"][test]]
        assert ids == [e["id"] for e in old["failures"][test]], f"{test}: re-record and commit"
        for new, was in zip(fresh["failures"][test], old["failures"][test]):
            _assert_same(new["point"], was["point"], f"{test}: {new['id']}")


def _assert_same(fresh, old, where: str) -> None:
    """Tensors within float tolerance, everything else exactly; recursively. A NaN matches a NaN:
    several known mistakes (a missing clamp or epsilon) are recorded by the NaN they produce."""
    if isinstance(fresh, torch.Tensor):
        torch.testing.assert_close(
            fresh, old, rtol=1e-5, atol=1e-6, equal_nan=True, msg=lambda m: f"{where}: {m}"
        )
    elif isinstance(fresh, (list, tuple)):
        assert type(fresh) is type(old) and len(fresh) == len(old), where
        for i, (a, b) in enumerate(zip(fresh, old)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(fresh, dict):
        assert sorted(fresh) == sorted(old), where
        for k in fresh:
            _assert_same(fresh[k], old[k], f"{where}[{k!r}]")
    elif isinstance(fresh, float):
        assert fresh == pytest.approx(old, rel=1e-5, abs=1e-6, nan_ok=True), where
    else:
        assert fresh == old, where


def test_expected_refuses_hidden_tests_and_reports_missing_recordings(tmp_path, monkeypatch):
    hidden = tmp_path / "m" / "test_hidden_x.py"
    public = tmp_path / "m" / "test_public_x.py"
    hidden.parent.mkdir()
    for path in (hidden, public):
        path.write_text(
            "from autograder.api import expected\ndef run():\n    return expected('k', lambda: 1.5)\n"
        )
    namespace: dict = {}
    exec(compile(hidden.read_text(), str(hidden), "exec"), namespace)
    with pytest.raises(RuntimeError, match="public tests only"):
        namespace["run"]()
    monkeypatch.setenv(api.EXPECTED_MODE_ENV, "recorded")
    exec(compile(public.read_text(), str(public), "exec"), namespace)
    with pytest.raises(FileNotFoundError, match="autograder record m"):
        namespace["run"]()
    monkeypatch.setenv(api.EXPECTED_MODE_ENV, "record")
    assert namespace["run"]() == 1.5
    monkeypatch.setenv(api.EXPECTED_MODE_ENV, "recorded")
    api._recorded.clear()
    assert namespace["run"]() == 1.5 and (public.parent / api.EXPECTED_FILE).exists()
