"""nbgrader preprocessors of the course configuration.

nbgrader's feedback shows hidden tests "by design" (jupyter/nbgrader#917): ``autograde`` restores
the hidden-test regions from the gradebook, runs them, and ``generate_feedback`` renders the
autograded notebook as it is, source and tracebacks included. Graders work around it by scrubbing
the HTML (#1363). Here the feedback converter runs :class:`ClearHiddenTestsFromFeedback` instead:
it removes the hidden-test regions from the cell source and replaces the traceback of a failed
hidden-test cell, which quotes the failing source line, by its exception name and message alone.
Scores are untouched: they were computed by ``autograde`` and are read from the gradebook.
"""

from __future__ import annotations

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests

HIDDEN_NOTE = "(hidden test: its source is not shown)"


class ClearHiddenTestsFromFeedback(ClearHiddenTests):
    """Remove hidden-test regions, and the tracebacks that would quote them, from feedback."""

    def _remove_hidden_test_region(self, cell: NotebookNode) -> bool:
        removed = super()._remove_hidden_test_region(cell)
        if removed:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = ": ".join(filter(None, [output.get("ename"), output.get("evalue")]))
                    output["traceback"] = [f"{message} {HIDDEN_NOTE}".strip()]
        return removed
