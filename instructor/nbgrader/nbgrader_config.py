"""The nbgrader configuration of the replearn course.

Use it from a course folder (the folder that holds ``source/<assignment>/``) in either way:

* ``python -m instructor.nbgrader.bridge setup --course DIR`` writes ``DIR/nbgrader_config.py``,
  which applies this configuration with ``CourseDirectory.root = DIR``; or
* write that file yourself::

      import sys
      sys.path.insert(0, "/path/to/the/repository")  # instructor/ is not installed
      from instructor.nbgrader.nbgrader_config import configure_course
      configure_course(get_config(), root="/path/to/course")

nbgrader can also load this file directly (``nbgrader ... --config=<this file>``); it then takes
the course folder from ``$REPLEARN_NBGRADER_ROOT``, else nbgrader's default (the working
directory).

Notebook conventions (the same markers as ``solutions/*.py``, ``replearn.contract.markers``):

* code the student writes sits between the BEGIN SOLUTION and END SOLUTION marker lines in a
  cell marked "Autograded answer" (``nbgrader: {solution: true, grade: false}``); the region
  becomes :data:`CODE_STUB` in the release;
* free-response questions are "Manually graded answer" cells (markdown,
  ``{solution: true, grade: true, points: N, grade_id: ..., schema_version: 3}``); their text
  becomes :data:`TEXT_STUB`;
* "Autograder tests" cells (``{solution: false, grade: true, points: N}``) call the public
  checks; hidden-test regions in them run at ``autograde`` time and never reach the feedback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from replearn.contract.markers import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END

REPO_ROOT = Path(__file__).resolve().parents[2]  # the instructors' repository (not installed)

COURSE_ID = "replearn"
ROOT_ENV = "REPLEARN_NBGRADER_ROOT"

# What replaces a solution region of a notebook cell (nbgrader puts it at the marker's
# indentation). nbgrader's default is "# YOUR CODE HERE\nraise NotImplementedError()".
CODE_STUB = 'raise NotImplementedError("Replace this line with your code")'
TEXT_STUB = "YOUR ANSWER HERE"

# Seconds one cell may run at autograde time. nbgrader's default is 30 s, too short for a
# training cell (jupyter/nbgrader#923, #915); the cpu-quick preset allows 5 minutes per notebook
# on 2 CPU cores, so one cell gets twice that.
CELL_TIMEOUT_S = 600

# Output kept per cell in autograded notebooks and feedback (a runaway print loop stays readable).
MAX_OUTPUT_LINES = 1000
MAX_TRACEBACK_LINES = 100


def configure_course(c, root: str | os.PathLike | None = None) -> None:
    """Apply the course configuration to the traitlets config ``c``.

    Args:
        c: the ``Config`` nbgrader hands to a config file (``get_config()``).
        root: the course folder; None leaves ``CourseDirectory.root`` as nbgrader sets it.
    """
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    if str(REPO_ROOT) not in sys.path:  # nbgrader may load this file by path (--config)
        sys.path.insert(0, str(REPO_ROOT))
    from instructor.nbgrader.preprocessors import ClearHiddenTestsFromFeedback

    c.CourseDirectory.course_id = COURSE_ID
    if root is not None:
        c.CourseDirectory.root = os.fspath(os.path.abspath(root))

    # Release: our markers and stubs (nbgrader matches delimiters as substrings of a line).
    c.ClearSolutions.begin_solution_delimeter = SOLUTION_BEGIN
    c.ClearSolutions.end_solution_delimeter = SOLUTION_END
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = TEXT_STUB
    c.ClearSolutions.enforce_metadata = True  # a region outside a solution cell is an error
    c.ClearHiddenTests.begin_test_delimeter = HIDDEN_BEGIN
    c.ClearHiddenTests.end_test_delimeter = HIDDEN_END
    c.ClearOutput.remove_metadata_fields = ["collapsed", "scrolled", "execution"]
    c.LockCells.lock_grade_cells = True  # test cells and free-response prompts stay as written
    c.LockCells.lock_readonly_cells = True
    c.LockCells.lock_solution_cells = False
    c.GenerateAssignment.create_assignment = True

    # Autograde: real workloads need more than 30 s a cell; a student is created on first sight.
    c.Execute.timeout = CELL_TIMEOUT_S
    c.ExecutePreprocessor.timeout = CELL_TIMEOUT_S
    c.Execute.interrupt_on_timeout = True
    c.LimitOutput.max_lines = MAX_OUTPUT_LINES
    c.LimitOutput.max_traceback = MAX_TRACEBACK_LINES
    c.Autograde.create_student = True

    # Feedback: nbgrader's converter plus the removal of hidden tests and their tracebacks.
    c.GenerateFeedback.preprocessors = [
        GetGrades,
        ClearHiddenTestsFromFeedback,
        CSSHTMLHeaderPreprocessor,
    ]


# Loaded by nbgrader as a config file, the namespace holds `get_config`; imported as a module it
# does not, and nothing happens.
if "get_config" in globals():
    configure_course(globals()["get_config"](), os.environ.get(ROOT_ENV))
