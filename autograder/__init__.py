"""The grader: ``python -m autograder {grade,check,answers,batch,record}``; see ``autograder.cli``.

It imports the course library (``replearn``, the submission contract ``replearn.contract``
included) and nothing of the instructor tooling.
"""

from pathlib import Path

GRADER_DIR = Path(__file__).resolve().parent  # this package: tests/, probes/, pytest.ini
REPO_ROOT = GRADER_DIR.parent  # the folder that holds it, with replearn/ beside it
