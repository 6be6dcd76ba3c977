"""Instructor tooling: what the course team runs and students never receive.

Nothing here ships in the wheel or the student hand-out (``pyproject.toml`` packages only
``replearn`` and ``autograder``; ``instructor.release.leaks`` refuses any file of this folder in a
hand-out or its wheel), and nothing installs it: run it from the repository's root folder as
``python -m instructor.<tool>`` (the Makefile does). Dependencies point one way: this package may
import the grader and the course library, never the reverse. Some of it needs the hidden tests
and the reference solutions, which only the instructors' repository holds.

* ``instructor.release``: the starter generator, the notebooks' nbgrader release, the student
  hand-out and its wheel, the course's identity (``make starter``, ``make release``);
* ``instructor.nbgrader``: the nbgrader course loop (release, collect, autograde, feedback, export);
* ``instructor.gradescope``: the Gradescope autograder zip (what runs inside it is the grader's);
* ``instructor.demo``: ``make demo``, every notebook executed and graded, with a report;
* ``instructor.book``: the course as a static HTML book, built from the notebooks that
  ``make demo`` executed (``make book``);
* ``instructor.grader_harness``: grader tests run in one process, as the grader runs them;
* ``instructor.handout_leaks``: can anything the students get fill in a graded part?
* ``instructor.class_rehearsal``: a made-up class of six for Assignment 4, graded by ``batch``.
"""
