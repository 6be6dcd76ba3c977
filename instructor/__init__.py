"""Instructor tooling: what the course team runs and students never receive.

Nothing here ships in the wheel or the student hand-out (``pyproject.toml`` packages only
``replearn`` and ``autograder``; the release's zip takes the same two trees). Dependencies point
one way: this package may import the grader and the course library, never the reverse. Some of
it needs the hidden tests and the reference solutions, which only the instructors' repository
holds.

* ``instructor.book``: the course as a static HTML book, built from the notebooks that
  ``make demo`` executed (``make book``);
* ``instructor.grader_harness``: grader tests run in one process, as the grader runs them;
* ``instructor.handout_leaks``: can anything the students get fill in a graded part?
* ``instructor.class_rehearsal``: a made-up class of six for Assignment 4, graded by ``batch``.
"""
