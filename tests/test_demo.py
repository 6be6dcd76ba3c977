"""`make demo`'s report: grades and numbers on one page, linking into the course book."""

import base64
import io

import nbformat

from instructor import demo
from replearn.notebook import run_notebook


def _png_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_report_holds_numbers_grades_and_links_into_the_book(tmp_path):
    nb = nbformat.v4.new_notebook()
    code = (
        "import torch\nfrom replearn import notebook, presets\n"
        "S = notebook.Session('demo_module', presets.get_preset(), torch.device('cpu'), 0, None,"
        " 'reference: solutions/demo_module.py', torch.Generator())\n"
        "S.data_notes.append('data: test data')\n"
        "from IPython.display import Image, display\n"
        f"display(Image(data=__import__('base64').b64decode({base64.b64encode(_png_bytes())!r})))\n"
        "S.record('linear probe accuracy', 0.8, '>= 0.75', at_least=0.75)\nS.finish()"
    )
    nb.cells = [nbformat.v4.new_code_cell(code)]
    src = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "report"
    run = run_notebook(src, out / "notebooks" / src.name, preset="smoke", timeout=60)
    assert run.ok, run.error
    grades = {
        "reference solutions": {
            "status": "graded",
            "score": 10.0,
            "max_score": 10.0,
            "per_module": {"demo_module": [10.0, 10.0]},
        }
    }
    index = demo.write_index(out, [run], grades, "smoke", 1.0, book=tmp_path / "book")
    page = index.read_text()
    assert "linear probe accuracy" in page and "0.8000" in page and "&gt;= 0.75" in page
    assert "10 / 10" in page and "data: test data" in page
    assert 'href="notebooks/01_demo.ipynb"' in page
    # figures are the book's: the report links to the notebook's page instead of copying them
    assert 'href="../book/01_demo.html"' in page and 'href="../book/index.html"' in page
    assert "<img" not in page


def test_demo_without_notebooks_still_writes_a_page(tmp_path):
    code = demo.main(["--only", "no-such-notebook", "--no-grade", "--out", str(tmp_path)])
    assert code == 0
    assert "No assignment notebooks yet" in (tmp_path / "index.html").read_text()


def test_summary_names_each_notebook_its_data_and_why_one_failed(tmp_path):
    from pathlib import Path

    from replearn.notebook import NotebookRun

    ok = NotebookRun(Path("01_a.ipynb"), tmp_path / "a", 12.0, True, summary={"data": ["data: X"]})
    bad = NotebookRun(
        Path("02_b.ipynb"), tmp_path / "b", 3.0, False, "Traceback\nValueError: boom\n", {}
    )
    text = demo.summary_text([ok, bad])
    assert "01_a" in text and "data: X" in text and "ok" in text
    assert "02_b" in text and "FAILED" in text and "failed: ValueError: boom" in text
    assert "data: (the notebook did not say)" in text
    assert text.rstrip().endswith("1 of 2 notebooks ran; FAILED: 02_b")
