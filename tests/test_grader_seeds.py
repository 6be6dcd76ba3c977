"""Hidden tests give the reference full marks whatever the hidden seed.

The two seeds reported by a grading run (``--seed 43274660287501257`` and
``--seed 1380100314227953020`` failed the unmodified reference in the MoCo/BYOL step test: the
pooled features of noise images barely varied, and the projection head's BatchNorm turned the
worker's and the parent's rounding differences into failed comparisons) run here as the grader
runs them (``instructor.grader_harness``), with a seed the audit found (a mask ratio that kept
no token); ``benchmarks.grader_seeds`` runs every hidden test for 1,000 seeds, and the slow test
below a few seeds of each.
"""

from __future__ import annotations

import pytest

from instructor import grader_harness
from replearn.contract import assignments

MOCO_BYOL = ("contrastive_learning", "test_moco_and_byol_steps_match_reference_with_another_seed")
MASKING = ("masked_autoencoders", "test_random_masking_matches_reference_and_is_uniform")
FAILED_BEFORE = [
    (*MOCO_BYOL, 43274660287501257),  # the two seeds a grading run reported
    (*MOCO_BYOL, 1380100314227953020),
    (*MASKING, 342),  # the audit's: a mask ratio that kept no token of 4 (6 seeds in 1,000)
]
MARGIN = 0.5  # of a tolerance: a comparison closer than this is fragile, not yet failing


@pytest.mark.parametrize(("module", "name", "seed"), FAILED_BEFORE)
def test_seeds_that_failed_the_reference_pass(module, name, seed):
    test = grader_harness.test_functions(module, "hidden")[name]
    run = grader_harness.run_test(
        test, module, grader_harness.reference_copies(module), hidden=True, grading_seed=seed
    )
    assert run.passed, run.message
    assert run.margins.worst < MARGIN, run.margins.ratios


def test_the_harness_reproduces_a_grader_failure():
    """The in-process run sees what the grader sees: a step function that drifts from the
    reference by a rounding-sized amount fails where the comparison is tight."""
    module = "contrastive_learning"
    tests = grader_harness.test_functions(module, "hidden")
    reference = grader_harness.reference_copies(module)

    def drifting():
        copy = reference()
        original = copy.simsiam_step

        def step(*args, **kwargs):
            out = original(*args, **kwargs)
            return {**out, "loss": out["loss"] * (1 + 1e-3)}

        copy.simsiam_step = step
        return copy

    name = "test_siamese_losses_and_simsiam_step_on_fresh_inputs"
    run = grader_harness.run_test(tests[name], module, drifting, hidden=True, grading_seed=1)
    assert not run.passed and "simsiam_step loss" in run.message


@pytest.mark.slow
def test_every_hidden_test_passes_the_reference_for_a_few_seeds_with_margin():
    """Three grading seeds for each hidden test of every assignment, reference against reference."""
    fragile = []
    for target in assignments.resolve("all"):
        if target.number == 0:
            continue
        reference = grader_harness.reference_copies(target.module)
        for name, test in grader_harness.test_functions(target.module, "hidden").items():
            for seed in (101, 202, 303):
                run = grader_harness.run_test(
                    test, target.module, reference, hidden=True, grading_seed=seed
                )
                if not run.passed or run.margins.worst >= MARGIN:
                    fragile.append(
                        (target.module, name, seed, run.message[:200], run.margins.worst)
                    )
    assert not fragile, fragile
