"""Every example in the course library's docstrings runs, so that none can drift from the code."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import replearn

MODULES = sorted(info.name for info in pkgutil.walk_packages(replearn.__path__, "replearn."))


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Examples may seed torch or set its threads; the next test gets the state it had."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    failures, _tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert failures == 0, f"{failures} docstring example(s) of {name} failed (run with -s to see)"


def _examples(name: str) -> int:
    return sum(
        len(test.examples) for test in doctest.DocTestFinder().find(importlib.import_module(name))
    )


def test_the_modules_that_teach_by_example_keep_their_examples():
    documented = ("augment", "backbones", "captions", "data", "distributed", "evaluate")
    documented += ("imagenet", "presets", "pretrain", "train")
    assert all(_examples(f"replearn.{name}") > 0 for name in documented)
