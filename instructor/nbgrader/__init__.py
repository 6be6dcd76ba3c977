"""The nbgrader course loop for the notebooks (instructor tooling, never shipped to students).

* ``nbgrader_config.py``: the course configuration (course id, markers, stubs, timeouts, feedback
  without hidden tests), applied by :func:`nbgrader_config.configure_course`;
* ``preprocessors.py``: the feedback preprocessor that drops hidden tests and their tracebacks;
* ``bridge.py``: set up a course folder, run ``generate_assignment`` / ``autograde`` /
  ``generate_feedback``, and export nbgrader's gradebook beside the trusted grader's module scores
  (``python -m instructor.nbgrader.bridge --help``, from the repository's root folder).
"""
