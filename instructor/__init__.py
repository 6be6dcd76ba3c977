"""Instructor tooling: what the course team runs and students never receive.

Nothing here ships in the wheel or the student hand-out (``pyproject.toml`` packages only
``replearn`` and ``autograder``; the release's zip takes the same two trees). Dependencies point
one way: this package may import the grader and the course library, never the reverse.

* ``instructor.book``: the course as a static HTML book, built from the notebooks that
  ``make demo`` executed (``make book``).
"""
