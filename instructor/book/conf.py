"""Sphinx configuration of the course book (copied into the staged source folder by
``python -m instructor.book``, which writes the build's settings beside it in ``_book.json``).

Sphinx with myst-nb reads the executed notebooks as pages without running them; the book theme
gives the table of contents, search and previous/next links. MathJax is served from the book's
own ``_static/mathjax`` (copied from the ``django-static-mathjax`` wheel), so no page loads
anything from another site.
"""

import json
from pathlib import Path

settings = json.loads((Path(__file__).parent / "_book.json").read_text(encoding="utf-8"))

project = settings["title"]
author = "replearn course authors"
copyright = "replearn course authors"  # noqa: A001 (Sphinx's name)
release = version = settings["version"]

extensions = [
    "myst_nb",  # notebooks and MyST Markdown (includes myst_parser)
    "sphinx.ext.mathjax",
    "sphinx.ext.githubpages",  # writes .nojekyll, so GitHub Pages serves _static/
]
exclude_patterns = ["_include", "_build", "**.ipynb_checkpoints"]
root_doc = "index"
nitpicky = True  # every cross-reference must resolve (the build runs with -W)

# Notebooks: rendered as executed by `make demo`, never run again.
nb_execution_mode = "off"
nb_output_stderr = "remove"  # progress bars and kernel warnings; results go to stdout
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN (widget outputs keep their text form)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "substitution", "html_image"]
myst_heading_anchors = 3
myst_substitutions = settings["substitutions"]

# Math: MathJax 3 from the book's own folder.
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_title = settings["title"]
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_copy_source = False  # no _sources/: the staged notebooks stay out of the site
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 2,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_source_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "navigation_with_keys": False,
}
