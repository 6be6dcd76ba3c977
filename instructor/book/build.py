"""Stage the executed notebooks as a Sphinx project and build the book.

The executed notebooks come from ``make demo`` (``build/demo/notebooks/<name>.ipynb`` with the
``S.finish()`` summary beside each as ``<name>.results.json``); they are copied, never run. Each
one gets, under its title, a box saying which preset, data and machine produced its outputs and a
table of the numbers promised beside the numbers measured, and, when a public hand-out location
is configured, a link that opens the student version in Colab.

Two editions differ in what a student must not read:

* ``public``: the answer cells of the free-response questions are removed, any solution region
  in a notebook cell is cut out, and each module page shows the starter code (stubs);
* ``instructor``: answer cells and solution regions are kept but folded (``<details>``), and each
  module page shows, under every stub, the reference solution, folded.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import nbformat

from instructor.release import (
    HELPER_MODULES,
    ReleaseError,
    find_regions,
    make_starter,
    scan_markers,
    stub_message,
)
from replearn import __version__
from replearn.contract.markers import HIDDEN_BEGIN, SOLUTION_BEGIN
from replearn.contract.notebooks import RUN_MIMETYPE

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EDITIONS = ("public", "instructor")
RESULTS_SUFFIX = ".results.json"  # what replearn.notebook.run_notebook writes beside a notebook

# The book's parts, in the lecture's order; a notebook belongs to the first part whose prefixes
# start its name (notebooks no part claims go into "More notebooks", so none is ever dropped).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Supervised pretraining", ("01",)),
    ("Self-supervised learning until 2019", ("02", "03")),
    ("Self-supervised learning from 2020", ("04", "05", "06")),
    ("The comparison", ("07",)),
)
# README sections that the book's pages include (so they are written once, in the README).
README_SECTIONS = (
    "## Presets",
    "## For students",
    "## For instructors",
    "## For self-learners",
    "### Pretraining on several GPUs",
    "## Data",
)
_COLAB_BADGE = re.compile(
    r"\[!\[[^\]]*\]\([^)]*\)\]\(https://colab\.research\.google\.com/[^)]*\)[ \t]*\n?"
)
# Output types the book shows in their text/plain form: the notebooks' run records (for the
# grader) and widgets (their JavaScript would come from a CDN; tqdm's bars are widgets).
_DROPPED_MIMETYPES = (RUN_MIMETYPE, "application/vnd.jupyter.widget-view+json")
_MATHJAX_KEEP = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors")


class BookError(RuntimeError):
    """The book cannot be built as asked (the message says what is missing and how to fix it)."""


@dataclass(frozen=True)
class Handout:
    """Where students get the hand-out: a public GitHub repository and its release tag.

    Colab opens notebooks from GitHub by URL, so the link of an assignment page is
    ``https://colab.research.google.com/github/<owner>/<name>/blob/<ref>/<folder>/<notebook>``.
    """

    repository: str  # https://github.com/<owner>/<name>
    ref: str  # the release tag (or a branch)
    folder: str = "assignments"  # where the student notebooks sit in that repository

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", self.repository):
            raise BookError(
                f"hand-out repository {self.repository!r}: Colab opens notebooks from GitHub "
                "only; give it as https://github.com/<owner>/<name>"
            )
        if not re.fullmatch(r"[\w./-]+", self.ref or ""):
            raise BookError(f"hand-out ref {self.ref!r}: give a tag or branch name, e.g. v1.0")

    @property
    def slug(self) -> str:
        return self.repository.rstrip("/").removeprefix("https://github.com/")

    def colab_url(self, notebook: str) -> str:
        path = f"{self.folder.strip('/')}/{notebook}" if self.folder else notebook
        return f"https://colab.research.google.com/github/{self.slug}/blob/{self.ref}/{path}"


def handout_location(repo: Path = REPO) -> Handout | None:
    """The configured public hand-out location, or None when the course configures none.

    The course configures it once (``[tool.replearn]`` of pyproject.toml, read by
    ``instructor.release.course_identity``), for ``make release``, which stamps it into the
    notebooks' badges and set-up cells; the book reads the same setting. A hand-out that is not
    on GitHub gets no Colab link (Colab opens notebooks from GitHub by address).
    """
    try:
        from instructor.release import course_identity
    except ImportError:  # a course package without a configured identity
        return None
    identity = course_identity(repo)
    url = getattr(identity, "handout_url", "")
    if not url:
        return None
    try:
        return Handout(url, identity.handout_ref)
    except BookError as err:
        print(f"book: no Colab links: {err}", file=sys.stderr)
        return None


@dataclass
class Page:
    """One notebook of the book: its executed copy, its summary and where it goes."""

    name: str  # the notebook's stem, which is also the page's name: <name>.html
    executed: Path
    summary: dict = field(default_factory=dict)
    module: str = ""  # the assignment module the notebook imports ("" for none)


@dataclass
class Book:
    """What a build produced: where, which pages, how long it took."""

    out: Path
    source: Path
    edition: str
    pages: list[str]
    seconds: float
    handout: Handout | None


# ---- finding the executed notebooks --------------------------------------------------------
def find_pages(demo: Path, only: list[str] | None = None) -> list[Page]:
    """The executed notebooks under ``demo/notebooks``, one for every ``assignments/*.ipynb``.

    ``only``: take just these notebook names (stems) and do not ask for the others (tests,
    partial builds). Raises :class:`BookError` naming the command that makes what is missing.
    """
    folder = Path(demo) / "notebooks"
    wanted = only or [p.stem for p in sorted((REPO / "assignments").glob("*.ipynb"))]
    if not wanted:
        raise BookError(f"no notebooks to put in the book: {REPO / 'assignments'} has none")
    missing = [name for name in wanted if not (folder / f"{name}.ipynb").is_file()]
    if missing:
        where = folder if folder.is_dir() else Path(demo)
        raise BookError(
            f"no executed copy of {', '.join(missing)} under {where}: the book is built from the "
            "notebooks `make demo` executed; run `make demo` first (or, for a quick look, "
            f"`python -m instructor.demo --preset smoke --no-grade --out {demo}`)"
        )
    pages = []
    for name in wanted:
        executed = folder / f"{name}.ipynb"
        results = folder / f"{name}{RESULTS_SUFFIX}"
        summary = json.loads(results.read_text()) if results.is_file() else {}
        pages.append(Page(name, executed, summary, summary.get("module", "")))
    return pages


def stale(page: Page) -> bool:
    """Whether the notebook's cells changed since ``make demo`` executed it."""
    original = REPO / "assignments" / f"{page.name}.ipynb"
    if not original.is_file():
        return False
    now = nbformat.read(original, as_version=4)
    ran = nbformat.read(page.executed, as_version=4)
    return [c.source for c in now.cells] != [c.source for c in ran.cells]


def _errors(nb) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


# ---- one notebook as a page -----------------------------------------------------------------
def _relative(text: str) -> str:
    """Paths inside the repository as the reader's clone would show them."""
    return text.replace(str(REPO) + os.sep, "")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return html.escape(_relative(str(text))).replace("|", "\\|").replace("\n", " ")


def _finish_record(nb) -> dict:
    """The ``S.finish()`` run record kept in the notebook's outputs ({} when absent)."""
    for cell in reversed(nb.cells):
        for output in cell.get("outputs", []):
            record = output.get("data", {}).get(RUN_MIMETYPE)
            if isinstance(record, dict) and record.get("event") == "finish":
                return record
    return {}


def _machine_text(summary: dict, record: dict) -> str:
    machine = summary.get("machine") or {}
    if not machine:
        device = summary.get("device") or record.get("device")
        return f"device {device}; the machine was not recorded" if device else "not recorded"
    parts = [machine.get("processor"), machine.get("platform")]
    cores = machine.get("cpu_count")
    parts.append(f"{cores} CPU cores" if cores else None)
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else None)
    parts.append(f"device {summary.get('device')}" if summary.get("device") else None)
    parts.append(f"torch {machine.get('torch') or summary.get('torch')}")
    load = machine.get("load_average_1min")
    parts.append(f"load average {load} at the end" if load is not None else None)
    return "; ".join(p for p in parts if p)


def colab_html(page: Page, handout: Handout) -> str:
    """The "Open in Colab" link of a page: the student version of its notebook."""
    url = handout.colab_url(f"{page.name}.ipynb")
    return (
        f'<p class="book-colab"><a class="book-colab-link" href="{html.escape(url)}">'
        "Open in Colab</a> the student version of this notebook "
        f"(hand-out {html.escape(handout.slug)} at {html.escape(handout.ref)})</p>"
    )


def _header(source: str, page: Page, handout: Handout | None) -> str:
    """The title cell without the notebook's own Colab badge (it names the instructors'
    repository), and with the book's link under the title when a hand-out is configured."""
    source = _COLAB_BADGE.sub("", source)
    if handout is None:
        return source
    title, _, rest = source.lstrip().partition("\n")
    return f"{title}\n\n{colab_html(page, handout)}\n\n{rest.lstrip()}"


def provenance_markdown(page: Page, nb) -> str:
    """The box under a page's title: what produced its outputs, and the promised numbers."""
    s = page.summary
    record = _finish_record(nb)
    lines = []
    if not s:
        lines += [
            ":::{admonition} How this page was made",
            ":class: warning book-provenance",
            f"The run left no summary ({page.name}{RESULTS_SUFFIX}): its preset, data and "
            "machine are unknown. Run `make demo` again to record them.",
            ":::",
        ]
        return "\n".join(lines)
    when = s.get("finished") or record.get("time") or ""
    when_text = f" on {when.replace('T', ' ').replace('Z', ' UTC')}" if when else ""
    impl = _relative(s.get("impl", "")) or "not recorded"
    data = [_relative(d).removeprefix("data: ") for d in s.get("data", [])]
    lines += [
        ":::{admonition} How this page was made",
        ":class: note book-provenance",
        f"The outputs below are one run of this notebook in preset **{s.get('preset', '?')}**"
        f"{when_text}, {s.get('seconds', 0):.0f} s from the first cell to the last, with "
        f"replearn {s.get('replearn', '?')}.",
        "",
        f"- **implementation**: {html.escape(impl)}",
        *(f"- **data**: {html.escape(d)}" for d in (data or ["not reported"])),
        f"- **machine**: {html.escape(_machine_text(s, record))}",
        ":::",
        "",
    ]
    records = s.get("records", [])
    preset = _cell(s.get("preset", "?"))
    promised = [r for r in records if r.get("promised")]
    others = [r for r in records if not r.get("promised")]
    if promised:
        held = sum(r.get("ok") is True for r in promised)
        below = sum(r.get("ok") is False for r in promised)
        verdict_text = f"{held} held" + (f", **{below} below**" if below else "")
        lines += [
            f"**Promised beside measured** in {preset} ({verdict_text}):",
            "",
            f"| quantity | promised ({preset}) | measured | |",
            "|---|---|---|---|",
            *(
                f"| {_cell(r.get('name', ''))} | {_cell(r['promised'])} "
                f"| {_cell(_fmt(r.get('value', '')))} "
                f"| {({True: 'held', False: '**below**'}).get(r.get('ok'), '')} |"
                for r in promised
            ),
            "",
        ]
    elif records:
        lines += [f"In preset {preset} this notebook promises no numbers.", ""]
    if others:
        table = "\n".join(
            ["| quantity | measured |", "|---|---|"]
            + [
                f"| {_cell(r.get('name', ''))} | {_cell(_fmt(r.get('value', '')))} |"
                for r in others
            ]
        )
        label = "other number" if len(others) == 1 else "other numbers"
        lines.append(_fold(f"{len(others)} {label} this run measured", table, "numbers"))
    if not records:
        lines.append("This notebook records no headline numbers; its findings are in its text.")
    return "\n".join(lines)


def _fold(summary: str, body: str, kind: str) -> str:
    """Markdown folded in a ``<details>`` element (MyST keeps the raw HTML around it)."""
    return (
        f'<details class="book-fold book-{kind}">\n<summary>{summary}</summary>\n\n'
        f"{body.strip()}\n\n</details>\n"
    )


def _without_regions(text: str, edition: str, where: str, *, code: bool) -> str:
    """``text`` with every marked region removed (public) or folded (instructor)."""
    regions = scan_markers(text, where)
    if not regions:
        return text
    lines = text.splitlines()
    out: list[str] = []
    cursor = 0
    for kind, begin, end, indent, _hint in regions:
        out += lines[cursor : begin - 1]
        body = "\n".join(lines[begin : end - 1])
        if edition == "instructor" and not code:
            label = "Answer" if kind == "solution" else "Hidden tests"
            out += _fold(f"{label} (instructors' copy)", body, kind).splitlines()
        elif edition == "instructor":
            out += lines[begin - 1 : end]  # the whole cell is folded by its hide-input tag
        elif code:
            out.append(f"{indent}...  # (removed from the public book)")
        cursor = end
    out += lines[cursor:]
    return "\n".join(out)


def stage_notebook(page: Page, edition: str, handout: Handout | None, module_pages: set[str]):
    """The executed notebook as the book shows it (a new notebook; the original is untouched)."""
    nb = nbformat.read(page.executed, as_version=4)
    errors = _errors(nb)
    if errors:
        raise BookError(
            f"{page.executed} holds errors ({'; '.join(errors[:3])}): a failed run does not go "
            "into the book; fix it and run `make demo` again"
        )
    cells = []
    header_done = False
    for index, cell in enumerate(nb.cells):
        where = f"{page.name}.ipynb cell {index}"
        grading = cell.get("metadata", {}).get("nbgrader", {})
        is_answer = cell.cell_type == "markdown" and grading.get("solution")
        if is_answer and edition == "public":
            continue  # the question stays, the answer cell goes
        source = cell.source
        if cell.cell_type == "markdown" and not header_done and source.lstrip().startswith("# "):
            source = _header(source, page, handout)
        if SOLUTION_BEGIN in source or HIDDEN_BEGIN in source:
            try:
                source = _without_regions(source, edition, where, code=cell.cell_type == "code")
            except ReleaseError as err:
                raise BookError(f"{page.executed}: {err}") from err
            if cell.cell_type == "code" and edition == "instructor":
                tags = cell.setdefault("metadata", {}).setdefault("tags", [])
                tags.append("hide-input")
        elif is_answer:  # instructor edition: an answer cell without markers, folded whole
            source = _fold("Answer (instructors' copy)", source, "solution")
        cell.source = source
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    output["text"] = _relative(output.get("text", ""))
                data = output.get("data", {})
                for mimetype in _DROPPED_MIMETYPES:  # the text/plain form stays
                    if mimetype in data and len(data) > 1:
                        del data[mimetype]
                if "text/plain" in data:
                    data["text/plain"] = _relative(data["text/plain"])
        cells.append(cell)
        if cell.cell_type == "markdown" and not header_done and source.lstrip().startswith("# "):
            header_done = True
            extra = provenance_markdown(page, nb)
            if page.module in module_pages:
                extra += f"\n\nThe module this notebook imports: {{doc}}`modules/{page.module}`."
            cells.append(nbformat.v4.new_markdown_cell(extra))
    if not header_done:
        raise BookError(f"{page.executed}: no '# Title' Markdown cell to name the page")
    nb.cells = cells
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    for number, cell in enumerate(nb.cells):  # unique and the same in every build
        cell["id"] = f"cell-{number}"
    return nb


# ---- module pages ---------------------------------------------------------------------------
def _fence(code: str, language: str = "python") -> str:
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", code)), default=0) + 1)
    return f"{ticks}{language}\n{code.rstrip()}\n{ticks}\n"


def module_markdown(module: str, edition: str, notebooks: list[Page]) -> str:
    """A module's page: the starter code (public), or stubs with the reference folded under them."""
    source = (REPO / "solutions" / f"{module}.py").read_text(encoding="utf-8")
    used_by = ", ".join(f"{{doc}}`../{p.name}`" for p in notebooks) or "no notebook"
    head = [f"# `{module}.py`", ""]
    if edition == "public":
        head += [
            f"The module that {used_by} imports, as the student receives it: every part to write "
            "raises `NotImplementedError`, and its docstring gives the contract (shapes, what "
            "to compute, the library shortcuts that are not allowed).",
            "",
        ]
        return "\n".join(head) + "\n" + _fence(make_starter(source, module))
    head += [
        f"The module that {used_by} imports. Instructors' copy: under each stub the student "
        "receives, the reference solution, folded.",
        "",
    ]
    lines = source.splitlines()
    chunks: list[str] = []
    cursor = 0
    for region in find_regions(source, f"solutions/{module}.py"):
        before = "\n".join(lines[cursor : region.begin - 1])
        if region.kind == "solution":
            stub = f"{region.indent}raise NotImplementedError({json.dumps(stub_message(region))})"
            code = f"{before}\n{stub}" if before.strip() else stub
            chunks.append(_fence(code.strip("\n")))
            body = "\n".join(lines[region.begin : region.end - 1]).strip("\n")
            name = html.escape(region.function or "")
            chunks.append(
                _fold(f"Reference solution: <code>{name}</code>", _fence(body), "solution")
            )
        elif before.strip():
            chunks.append(_fence(before.strip("\n")))
        cursor = region.end
    rest = "\n".join(lines[cursor:]).strip("\n")
    if rest:
        chunks.append(_fence(rest))
    return "\n".join(head) + "\n" + "\n".join(chunks)


# ---- the Sphinx project -------------------------------------------------------------------
def _parts(pages: list[Page]) -> list[tuple[str, list[str]]]:
    parts: list[tuple[str, list[str]]] = [(title, []) for title, _ in PARTS]
    extra: list[str] = []
    for page in pages:
        for (_, prefixes), (_, names) in zip(PARTS, parts):
            if page.name.startswith(prefixes):
                names.append(page.name)
                break
        else:
            extra.append(page.name)
    parts.append(("More notebooks", extra))
    return [(title, names) for title, names in parts if names]


def _toctree(caption: str, entries: list[str]) -> str:
    return "\n".join(["```{toctree}", f":caption: {caption}", ":hidden:", "", *entries, "```", ""])


def _copy_mathjax(static: Path) -> None:
    """MathJax 3 (the ``django-static-mathjax`` wheel) into ``_static/mathjax``: the HTML/CSS
    output with its fonts and the TeX input with its extensions, nothing from a CDN."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError as err:
        raise BookError(
            "MathJax is missing: install the book's extra, "
            '`pip install -c constraints.txt -e ".[book]"` (or `make book`, which does)'
        ) from err
    es5 = root / "es5"
    target = static / "mathjax"
    for part in _MATHJAX_KEEP:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
    shutil.copy2(root / "LICENSE", target / "LICENSE")


_RELATIVE_LINK = re.compile(r"\[([^\]]+)\]\((?![a-z][a-z0-9+.-]*:|#)([^)\s]+)\)")


def repository_links_as_text(markdown: str) -> str:
    """README text for the book: a link to a file of the repository (``[x](handout/README.md)``)
    names the file instead (the book holds no such page), so that nothing links nowhere."""

    def text(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        shown = f"`{target}`"
        return shown if label.strip("`") == target else f"{label} ({shown} in the repository)"

    return _RELATIVE_LINK.sub(text, markdown)


def _check_readme(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8").splitlines()
    missing = [h for h in README_SECTIONS if h not in text]
    if missing:
        raise BookError(
            f"{readme} has no section {', '.join(repr(h) for h in missing)}: the book's pages "
            "include those README sections; rename them in instructor/book/pages/*.md too"
        )


def stage(
    pages: list[Page], source: Path, edition: str, handout: Handout | None, title: str
) -> list[str]:
    """Write the Sphinx project for ``pages`` into ``source``; returns the page names in order."""
    if source.exists():
        shutil.rmtree(source)
    (source / "_static").mkdir(parents=True)
    (source / "_include").mkdir()
    (source / "modules").mkdir()
    readme = REPO / "README.md"
    _check_readme(readme)
    (source / "_include" / "README.md").write_text(
        repository_links_as_text(readme.read_text(encoding="utf-8")), encoding="utf-8"
    )
    shutil.copy2(HERE / "conf.py", source / "conf.py")
    shutil.copy2(HERE / "static" / "book.css", source / "_static" / "book.css")
    _copy_mathjax(source / "_static")

    modules = sorted(
        {p.module for p in pages if p.module}
        & {p.stem for p in (REPO / "solutions").glob("*.py") if p.stem not in HELPER_MODULES},
        key=lambda m: next(i for i, p in enumerate(pages) if p.module == m),
    )
    for page in pages:
        nbformat.write(
            stage_notebook(page, edition, handout, set(modules)), source / f"{page.name}.ipynb"
        )
    for module in modules:
        users = [p for p in pages if p.module == module]
        (source / "modules" / f"{module}.md").write_text(
            module_markdown(module, edition, users), encoding="utf-8"
        )

    names = {p.name for p in pages}
    intro = (HERE / "pages" / "index.md").read_text(encoding="utf-8")
    # a partial build links only the notebooks it has
    intro = re.sub(
        r"\{doc\}`(\w+)`",
        lambda m: (
            m.group(0)
            if m.group(1) in names or m.group(1) in ("colab-and-gpus", "instructors")
            else f"*{m.group(1)}* (not in this build)"
        ),
        intro,
    )
    toctrees = [_toctree(caption, entries) for caption, entries in _parts(pages)]
    toctrees.append(_toctree("Running the course", ["colab-and-gpus", "instructors"]))
    if modules:
        toctrees.append(_toctree("The modules", [f"modules/{m}" for m in modules]))
    (source / "index.md").write_text(intro + "\n" + "\n".join(toctrees), encoding="utf-8")
    for extra in ("colab-and-gpus.md", "instructors.md"):
        shutil.copy2(HERE / "pages" / extra, source / extra)

    if handout is None:
        colab_note = (
            "This build names no public hand-out, so its pages carry no Colab link. Open the "
            "notebook your course hands out in Colab (*File > Upload notebook*, or *File > Open "
            "notebook > GitHub* for a public repository)."
        )
    else:
        colab_note = (
            "Every assignment page has an **Open in Colab** link to the student version of its "
            f"notebook, from the hand-out <{handout.repository}> at `{handout.ref}`."
        )
    edition_title = title if edition == "public" else f"{title} (instructors' copy)"
    settings = {
        "title": edition_title,
        "version": __version__,
        "edition": edition,
        "substitutions": {"colab_note": colab_note},
    }
    (source / "_book.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    order = ["index"]
    for _, entries in _parts(pages):
        order += entries
    order += ["colab-and-gpus", "instructors"] + [f"modules/{m}" for m in modules]
    return order


def run_sphinx(source: Path, out: Path, *, jobs: str = "1", quiet: bool = True) -> None:
    """``sphinx-build -b html -W -n -E``: every warning, unresolved reference included, fails.

    Sphinx writes into ``source/_build/html`` (myst-nb keeps its scratch folder beside that); the
    finished site then replaces ``out``, so a failed build leaves the previous book in place.
    """
    work = source / "_build"
    html_dir = work / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-E"]
    cmd += ["-j", jobs, "-d", str(work / "doctrees"), *(["-q"] if quiet else [])]
    done = subprocess.run([*cmd, str(source), str(html_dir)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BookError(
            f"sphinx-build failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-6000:]}"
        )
    with contextlib.suppress(OSError):
        (html_dir / "_sources").rmdir()  # left empty: html_copy_source is off
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(html_dir), str(out))


def build(
    demo: str | Path = REPO / "build" / "demo",
    out: str | Path | None = None,
    *,
    edition: str = "public",
    handout: Handout | None = None,
    only: list[str] | None = None,
    source: str | Path | None = None,
    title: str = "Representation learning in vision",
    jobs: str = "1",
    check: bool = True,
) -> Book:
    """Build the book from the executed notebooks under ``demo``; returns what it built.

    ``handout``: the hand-out whose notebooks the Colab links open (default: the configured one,
    :func:`handout_location`). ``check``: after Sphinx, check every internal link and resource
    of the site (:func:`instructor.book.checks.check_site`) and, in the public edition, that no
    solution text reached it.
    """
    from instructor.book import checks

    if edition not in EDITIONS:
        raise BookError(f"edition {edition!r}: choose one of {', '.join(EDITIONS)}")
    started = time.perf_counter()
    default_out = "book" if edition == "public" else "book-instructor"
    out = Path(out or REPO / "build" / default_out).resolve()
    source = Path(source or out.parent / f"{out.name}-src").resolve()
    if out == source or source in out.parents or out in source.parents:
        raise BookError(f"the staging folder {source} and the output {out} must not nest")
    handout = handout if handout is not None else handout_location()
    pages = find_pages(Path(demo), only)
    for page in pages:
        if stale(page):
            print(
                f"book: warning: {page.executed} was executed from another version of "
                f"assignments/{page.name}.ipynb; `make demo` brings its outputs up to date",
                file=sys.stderr,
            )
    order = stage(pages, source, edition, handout, title)
    run_sphinx(source, out, jobs=jobs)
    if check:
        problems = checks.check_site(out)
        if edition == "public":
            problems += checks.solution_leaks(out)
        if problems:
            shown = "\n  ".join(problems[:40])
            raise BookError(f"the built book at {out} has {len(problems)} problem(s):\n  {shown}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (out / "BUILD.txt").write_text(
        f"replearn book, {edition} edition, built {stamp} from {Path(demo).resolve()}\n"
    )
    return Book(out, source, edition, order, time.perf_counter() - started, handout)
