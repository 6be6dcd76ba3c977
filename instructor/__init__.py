"""Instructor tooling that never ships to students (not in the hand-out, not in the wheel).

* :mod:`instructor.grader_harness`: grader tests run in one process, as the grader runs them;
* :mod:`instructor.handout_leaks`: can anything the students get fill in a graded part?

It needs the hidden tests and the reference solutions, which only the instructors' repository
holds. Dependencies point one way: this package uses the grader and the course library.
"""
