"""Static checks of a built book: internal links, resources, and that no solution leaked.

Sphinx's ``linkcheck`` follows external links; these check what it does not: that every
relative ``href``/``src`` of every page (and every ``url(...)`` of its stylesheets) names a file
inside the book, that every ``#fragment`` names an element of its target page, and that no
script, stylesheet, image or font comes from another site (the book must work offline).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from instructor.release import find_regions
from replearn.contract.markers import SOLUTION_BEGIN, SOLUTION_END

# (tag, attribute) pairs that load something into the page, and those that only navigate
_RESOURCE_ATTRS = {
    ("img", "src"),
    ("script", "src"),
    ("link", "href"),
    ("source", "src"),
    ("iframe", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
}
_NAV_ATTRS = {("a", "href"), ("area", "href")}
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(values[key])
        for attr, value in attrs:
            if value is not None and ((tag, attr) in _RESOURCE_ATTRS | _NAV_ATTRS):
                if tag == "link" and "preconnect" in (values.get("rel") or ""):
                    self.refs.append((tag, "href-preconnect", value))
                else:
                    self.refs.append((tag, attr, value))


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def site_pages(root: str | Path) -> list[Path]:
    """The book's pages: every HTML file outside ``_static/`` (where themes keep templates)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)


def check_site(root: str | Path) -> list[str]:
    """Problems of the site under ``root``, one line each (an empty list: none)."""
    root = Path(root).resolve()
    pages = site_pages(root)
    if not (root / "index.html").is_file():
        return [f"{root}: no index.html"]
    parsed = {page: _parse(page) for page in pages}
    problems: list[str] = []

    def target_of(base: Path, url: str) -> tuple[Path | None, str]:
        parts = urlsplit(url)
        path = unquote(parts.path)
        target = (base.parent / path).resolve() if path else base
        if target.is_dir():
            target = target / "index.html"
        return target, parts.fragment

    for page, parser in parsed.items():
        where = page.relative_to(root)
        for tag, attr, url in parser.refs:
            url = url.strip()
            scheme = urlsplit(url).scheme
            if url.startswith(("mailto:", "javascript:", "data:", "tel:")) or url == "#":
                continue
            if scheme in ("http", "https") or url.startswith("//"):
                if (tag, attr) not in _NAV_ATTRS:
                    problems.append(f"{where}: <{tag} {attr}> loads {url} from another site")
                continue
            if scheme:
                problems.append(f"{where}: <{tag} {attr}> has an unexpected URL {url}")
                continue
            target, fragment = target_of(page, url)
            if root not in target.parents and target != root:
                problems.append(f"{where}: {url} points outside the book")
            elif not target.is_file():
                problems.append(f"{where}: <{tag} {attr}> {url}: no such file in the book")
            elif fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(fragment) not in ids:
                    problems.append(f"{where}: {url}: {target.name} has no element #{fragment}")
    for css in sorted(root.rglob("*.css")):
        for url in _CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            if url.startswith(("data:", "#")):
                continue
            if urlsplit(url).scheme or url.startswith("//"):
                problems.append(f"{css.relative_to(root)}: url({url}) loads from another site")
                continue
            path = unquote(urlsplit(url).path)
            if path and not (css.parent / path).resolve().is_file():
                problems.append(f"{css.relative_to(root)}: url({url}): no such file in the book")
    return problems


def solution_lines(repo: Path, min_length: int = 30) -> dict[str, str]:
    """Distinctive lines of the reference solutions: ``{line: "module:line number"}``.

    A line counts when it sits inside a solution region, is at least ``min_length`` characters
    long without its indentation, and appears in no module's starter code (a line that students
    receive anyway, in this module or another, gives nothing away).
    """
    from instructor.release import make_starter

    sources = {}
    for path in sorted((Path(repo) / "solutions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        regions = [r for r in find_regions(source, str(path)) if r.kind == "solution"]
        if regions:
            sources[path] = (source, regions)
    given = {
        line.strip()
        for path, (source, _) in sources.items()
        for line in make_starter(source, path.stem).splitlines()
    }
    found: dict[str, str] = {}
    for path, (source, regions) in sources.items():
        lines = source.splitlines()
        for region in regions:
            for number in range(region.begin, region.end - 1):
                text = lines[number].strip()
                if len(text) >= min_length and text not in given and not text.startswith("#"):
                    found.setdefault(text, f"{path.name}:{number + 1}")
    return found


def solution_leaks(root: str | Path, repo: str | Path | None = None) -> list[str]:
    """Solution markers or reference-solution lines anywhere in the site under ``root``."""
    import html as html_module

    root = Path(root)
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    wanted = solution_lines(repo)
    problems = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".html", ".js", ".txt", ".json", ".ipynb", ".py", ".md"):
            continue
        if "_static" in path.relative_to(root).parts and path.name != "searchindex.js":
            continue  # the theme's and MathJax's files
        text = path.read_text(encoding="utf-8", errors="replace")
        plain = html_module.unescape(re.sub(r"<[^>]+>", "", text))
        for marker in (SOLUTION_BEGIN, SOLUTION_END):
            if marker in plain:
                problems.append(f"{path.relative_to(root)}: holds the marker {marker!r}")
        shown = {line.strip() for line in plain.splitlines()}
        for line in sorted(shown & wanted.keys(), key=wanted.get):
            problems.append(f"{path.relative_to(root)}: holds solution line {wanted[line]}")
    return problems
