"""The marker lines of the one source of truth (``solutions/*.py`` and the source notebooks).

Every part a student writes sits between a BEGIN SOLUTION and an END SOLUTION line (three hashes,
nbgrader's syntax, so the same markers serve modules and notebooks); notebook cells may also hold
hidden-test regions. ``instructor.release`` turns the regions into stubs, the grader flags a
submission that still carries them, and the leak checks refuse any shipped file that spells one.

The strings are assembled from two halves so that this file, which ships to students inside the
course package, never spells a marker out itself.
"""

from __future__ import annotations

_HASHES = "###"
SOLUTION_BEGIN = f"{_HASHES} BEGIN SOLUTION"
SOLUTION_END = f"{_HASHES} END SOLUTION"
HIDDEN_BEGIN = f"{_HASHES} BEGIN HIDDEN TESTS"
HIDDEN_END = f"{_HASHES} END HIDDEN TESTS"
SOLUTION_MARKERS = (SOLUTION_BEGIN, SOLUTION_END)
ALL_MARKERS = (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END)
