"""The course as a static HTML book for self-learners (``make book``).

Built with Sphinx, myst-nb and sphinx-book-theme from the notebooks that ``make demo`` executed
with the reference solutions (nothing runs twice): an introduction in the lecture's order, one
page per assignment with its figures, equations and questions, the comparison, pages on running
the course and for instructors, and the module each assignment imports. See
:mod:`instructor.book.build` for the two editions (public, instructors' copy),
:mod:`instructor.book.checks` for the link and leak checks and :mod:`instructor.book.browser`
for the check in headless Chromium.

Why Sphinx + myst-nb + sphinx-book-theme: they are the engine of Jupyter Book 1 and of the
tutorial sites this course is modelled on, they render executed notebooks without re-running
them, and they build offline from PyPI packages alone (Jupyter Book 2 needs Node.js and fetches
its web theme as a template at build time).
"""

from instructor.book.build import (
    EDITIONS,
    Book,
    BookError,
    Handout,
    Page,
    build,
    find_pages,
    handout_location,
)

__all__ = [
    "EDITIONS",
    "Book",
    "BookError",
    "Handout",
    "Page",
    "build",
    "find_pages",
    "handout_location",
]
