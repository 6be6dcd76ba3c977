"""`make book`: the course book built from a tiny set of executed notebooks.

The notebooks are made here with real outputs (a figure, printed text, the run record a kernel
attaches) and the summary that ``S.finish()`` writes, so the build sees what ``make demo`` leaves
behind without running a kernel. Two builds serve every test: the public book without a hand-out
location and the instructors' copy with one.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch

pytest.importorskip("sphinx", reason="the book's extra is not installed: pip install -e '.[book]'")
pytest.importorskip("myst_nb", reason="the book's extra is not installed: pip install -e '.[book]'")

from instructor import book as book_mod  # noqa: E402
from instructor.book import browser, checks  # noqa: E402
from instructor.book.build import repository_links_as_text  # noqa: E402
from replearn import notebook, presets  # noqa: E402
from replearn.contract.markers import SOLUTION_BEGIN, SOLUTION_END  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HANDOUT = book_mod.Handout("https://github.com/example-course/handout", "v1.2")
SECRET_ANSWER = "The rotated sky gives the answer away"
SECRET_CODE = "hidden_helper = reference_trick(x) * 3"


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1, 2], [2, 0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def _executed(folder: Path, name: str, module: str, records: bool) -> None:
    """An executed notebook and its results.json, as `make demo` leaves them."""
    session = notebook.Session(
        module,
        presets.get_preset("smoke"),
        torch.device("cpu"),
        0,
        None,
        f"{module}: the reference solution from {REPO}/solutions/{module}.py",
        torch.Generator(),
    )
    session.note_data("data: cifar10-5k (50 train / 50 test) from a test fixture")
    if records:
        session.record("linear probe accuracy", 0.8125, ">= 0.75", at_least=0.75)
        session.record("kNN - random init", -0.01, "> 0", at_least=1e-9)
        session.record("raw pixels", 0.1)
    summary = session.summary()
    (folder / f"{name}.results.json").write_text(json.dumps(summary))

    title = nbformat.v4.new_markdown_cell(
        f"# Assignment {name[:2]}: a tiny notebook\n\n"
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/someone/repo/blob/main/assignments/{name}.ipynb)\n\n"
        "Inline math $s_{i,j} = z_i^\\top z_j / \\tau$ and a display:\n\n"
        "$$\nL_i = -\\log \\frac{\\exp(s_{i,j}/\\tau)}{\\sum_{k \\neq i} \\exp(s_{i,k}/\\tau)}\n$$"
    )
    figure = nbformat.v4.new_code_cell("plot()", execution_count=1)
    figure.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"loaded {REPO}/solutions/x.py\n"),
        nbformat.v4.new_output("stream", name="stderr", text="progress 100%|#####|\n"),
        nbformat.v4.new_output(
            "display_data", data={"image/png": _png(), "text/plain": "<Figure>"}
        ),
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "replearn | preset smoke",
                notebook.RUN_MIMETYPE: {"event": "finish", "time": "2025-01-01T00:00:00Z"},
            },
        ),
    ]
    question = nbformat.v4.new_markdown_cell("**Question 1 (2 points).** Why does it work?")
    answer = nbformat.v4.new_markdown_cell(f"{SOLUTION_BEGIN}\n{SECRET_ANSWER}.\n{SOLUTION_END}")
    answer.metadata["nbgrader"] = {
        "solution": True,
        "grade": True,
        "grade_id": "q1",
        "points": 2,
        "locked": False,
        "schema_version": 3,
    }
    code = nbformat.v4.new_code_cell(
        f"x = 1\n{SOLUTION_BEGIN}\n{SECRET_CODE}\n{SOLUTION_END}\nprint(x)", execution_count=2
    )
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb = nbformat.v4.new_notebook(cells=[title, figure, question, answer, code])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    (root / "notebooks").mkdir()
    _executed(root / "notebooks", "01_transfer_learning", "transfer_learning", records=True)
    _executed(root / "notebooks", "07_which_method_is_best", "", records=False)
    return root


NAMES = ["01_transfer_learning", "07_which_method_is_best"]


@pytest.fixture(scope="module")
def public(demo, tmp_path_factory) -> book_mod.Book:
    out = tmp_path_factory.mktemp("public") / "book"
    return book_mod.build(demo, out, edition="public", only=NAMES, handout=None)


@pytest.fixture(scope="module")
def instructor(demo, tmp_path_factory) -> book_mod.Book:
    out = tmp_path_factory.mktemp("instructor") / "book"
    return book_mod.build(demo, out, edition="instructor", only=NAMES, handout=HANDOUT)


def _text(book: book_mod.Book, page: str) -> str:
    return (book.out / page).read_text(encoding="utf-8")


def _plain(html: str) -> str:
    """The text of a page (highlighted code is split into spans)."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", html))


def _all_html(book: book_mod.Book) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in checks.site_pages(book.out))


def test_pages_in_the_course_order_with_navigation_search_and_offline_math(public):
    assert public.pages == [
        "index",
        *NAMES,
        "colab-and-gpus",
        "instructors",
        "modules/transfer_learning",
    ]
    for page in public.pages:
        assert (public.out / f"{page}.html").is_file(), page
    assert (public.out / "search.html").is_file() and (public.out / "searchindex.js").is_file()
    assert (public.out / ".nojekyll").is_file()  # GitHub Pages serves _static/
    assert (public.out / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((public.out / "_static" / "mathjax").rglob("*.woff"))  # its fonts too
    page = _text(public, "01_transfer_learning.html")
    # table of contents with the parts, previous / next
    assert "Supervised pretraining" in page and "The comparison" in page
    assert 'class="left-prev"' in page and 'href="index.html"' in page
    assert 'class="right-next"' in page and 'href="07_which_method_is_best.html"' in page
    # MathJax from the book's own folder, the equations left for it to typeset
    assert 'src="_static/mathjax/tex-chtml.js' in page
    assert 'class="math notranslate nohighlight"' in page and "\\exp(s_{i,j}/\\tau)" in page
    intro = _text(public, "index.html")
    assert "03_pretext_tasks" in intro and "(not in this build)" in intro  # a partial build
    assert "Self-supervised learning from 2020" in intro


def test_every_page_says_what_produced_it_and_promised_beside_measured(public):
    page = _text(public, "01_transfer_learning.html")
    assert "How this page was made" in page and "preset <strong>smoke</strong>" in page
    assert "cifar10-5k (50 train / 50 test) from a test fixture" in page
    assert "CPU cores" in page and "torch " in page  # the machine
    assert "solutions/transfer_learning.py" in page and str(REPO) not in page
    table = page[page.index("Promised beside measured") :]
    assert "linear probe accuracy" in table and "&gt;= 0.75" in table and "0.8125" in table
    assert "1 held, <strong>1 below</strong>" in table
    assert "1 other number this run measured" in table and "-0.0100" not in table[:200]
    assert "raw pixels" in table and "0.1000" in table
    assert "records no headline numbers" in _text(public, "07_which_method_is_best.html")
    # the figure is in place, stderr noise and the run record's JSON are not
    assert re.search(r'<img[^>]+src="_images/[^"]+\.png"', page)
    assert "progress 100%" not in page and "application/vnd.replearn" not in page
    assert "The module this notebook imports" in page and "modules/transfer_learning.html" in page


def test_public_book_keeps_the_questions_and_gives_no_solution_away(public):
    page = _text(public, "01_transfer_learning.html")
    assert "Why does it work?" in page  # the free-response question
    text = _plain(_all_html(public)) + (public.out / "searchindex.js").read_text()
    assert SECRET_ANSWER not in text and SECRET_CODE not in text
    assert SOLUTION_BEGIN not in text and "removed from the public book" in _plain(page)
    assert checks.solution_leaks(public.out) == []
    module = _text(public, "modules/transfer_learning.html")
    assert "NotImplementedError" in module and "Reference solution" not in module


def test_instructors_copy_folds_answers_and_reference_solutions(instructor):
    page = _text(instructor, "01_transfer_learning.html")
    assert SECRET_ANSWER in page
    answer = page[page.index('<details class="book-fold book-solution">') :]
    assert answer.index(SECRET_ANSWER) < answer.index("</details>")
    assert SECRET_CODE in _plain(page) and "hide-input" in page  # the code cell's input is folded
    module = _text(instructor, "modules/transfer_learning.html")
    assert module.count('<details class="book-fold book-solution">') >= 5
    assert "Reference solution: <code>" in module and "NotImplementedError" in module
    assert checks.solution_leaks(instructor.out)  # the leak check sees the instructors' copy


def test_colab_link_only_when_a_hand_out_is_configured(public, instructor):
    assert "colab.research.google.com" not in _all_html(public)  # the notebook's badge is gone
    assert "no Colab link" in _text(public, "colab-and-gpus.html")
    want = (
        "https://colab.research.google.com/github/example-course/handout/blob/v1.2/"
        "assignments/01_transfer_learning.ipynb"
    )
    page = _text(instructor, "01_transfer_learning.html")
    assert f'href="{want}"' in page  # under the title, where the notebook's badge was
    assert page.index("<h1>") < page.index(want) < page.index("How this page was made")
    assert "someone/repo" not in _all_html(instructor)
    with pytest.raises(book_mod.BookError, match="GitHub"):
        book_mod.Handout("https://gitlab.com/a/b", "v1")


@pytest.mark.parametrize(
    ("url", "ref", "expected"),
    [
        ("", "", None),
        ("https://github.com/example-course/handout", "v2.0", "example-course/handout@v2.0"),
        ("https://gitlab.com/example-course/handout", "v2.0", None),  # Colab opens GitHub only
    ],
)
def test_the_configured_hand_out_is_the_one_make_release_uses(monkeypatch, url, ref, expected):
    from types import SimpleNamespace

    from instructor import release

    identity = SimpleNamespace(handout_url=url, handout_ref=ref)
    monkeypatch.setattr(release, "course_identity", lambda repo=None: identity, raising=False)
    found = book_mod.handout_location()
    assert (found and f"{found.slug}@{found.ref}") == expected


@pytest.mark.parametrize("edition", ["public", "instructor"])
def test_internal_links_and_resources_all_resolve(public, instructor, edition):
    book = public if edition == "public" else instructor
    assert checks.check_site(book.out) == []
    assert not (book.out / "_sources").exists()  # no copy of the staged notebooks


def test_link_check_finds_broken_links_and_remote_resources(public, tmp_path):
    import shutil

    site = tmp_path / "site"
    shutil.copytree(public.out, site)
    page = site / "instructors.html"
    page.write_text(
        page.read_text().replace(
            "</main>",
            '<a href="nowhere.html">x</a><a href="index.html#no-such-id">y</a>'
            '<img src="https://cdn.example.org/x.png"></main>',
            1,
        )
    )
    problems = "\n".join(checks.check_site(site))
    assert "nowhere.html: no such file" in problems
    assert "has no element #no-such-id" in problems
    assert "loads https://cdn.example.org/x.png from another site" in problems


def test_readme_links_to_repository_files_become_file_names():
    text = (
        "See [`handout/README.md`](handout/README.md), [the data notes](data/README.md), "
        "[PyTorch](https://pytorch.org) and [below](#data)."
    )
    assert repository_links_as_text(text) == (
        "See `handout/README.md`, the data notes (`data/README.md` in the repository), "
        "[PyTorch](https://pytorch.org) and [below](#data)."
    )


def test_missing_executed_notebooks_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(book_mod.BookError, match="run `make demo` first"):
        book_mod.find_pages(tmp_path)


def test_failed_notebook_does_not_go_into_the_book(demo, tmp_path):
    nb = nbformat.read(demo / "notebooks" / "07_which_method_is_best.ipynb", as_version=4)
    nb.cells[1].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="boom"))
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "07_which_method_is_best.ipynb")
    with pytest.raises(book_mod.BookError, match="ValueError: boom"):
        book_mod.build(tmp_path, tmp_path / "out", only=["07_which_method_is_best"])


def test_the_book_builder_never_ships_to_students():
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = config["packages"]["find"]
    shipped = find_packages(str(REPO), include=found["include"], exclude=found.get("exclude", ()))
    assert "instructor" not in shipped and not any(p.startswith("instructor.") for p in shipped)
    assert "replearn" in shipped
    from instructor import release

    assert "instructor" not in release.SHIPPED_TREES


@pytest.mark.slow
def test_every_page_renders_in_headless_chromium(public, instructor, tmp_path):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    for book in (public, instructor):
        shots = tmp_path / book.edition
        reports = browser.check_book(book.out, shots)
        pages = {r.page for r in reports}
        assert {f"{p}.html" for p in book.pages} <= pages and "search.html" in pages
        assert [(r.page, r.problems) for r in reports if r.problems] == []
        by_page = {r.page: r for r in reports}
        assert by_page["01_transfer_learning.html"].images >= 1
        assert by_page["01_transfer_learning.html"].maths >= 2
        assert all(Path(s).stat().st_size > 5000 for r in reports for s in r.screenshots)
        assert (shots / "01_transfer_learning.png").is_file()


@pytest.mark.slow
def test_browser_check_fails_on_a_broken_image_and_unrendered_math(public, tmp_path):
    import shutil

    if browser.find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    site = tmp_path / "site"
    shutil.copytree(public.out, site)
    page = site / "instructors.html"
    page.write_text(
        page.read_text().replace(
            "</main>",
            '<img src="_images/missing.png"><p>left over: \\(x^2\\)</p>'
            '<span class="math">y</span></main>',
            1,
        )
    )
    report = {r.page: r for r in browser.check_book(site, None)}["instructors.html"]
    problems = "\n".join(report.problems)
    assert "image did not load" in problems and "missing.png" in problems
    assert "equation not rendered" in problems and "TeX left in the text" in problems
