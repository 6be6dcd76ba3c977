"""``make book``: build the course book from the notebooks ``make demo`` executed.

Usage: ``python -m instructor.book [--demo build/demo] [--edition public|instructor]
[--out DIR] [--handout-url https://github.com/OWNER/NAME --handout-ref TAG] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instructor.book.build import EDITIONS, REPO, BookError, Handout, build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m instructor.book",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--demo",
        default=str(REPO / "build" / "demo"),
        help="the folder `make demo` wrote (its notebooks/ holds the executed copies)",
    )
    parser.add_argument(
        "--edition",
        choices=EDITIONS,
        default="public",
        help="public: answers and reference solutions removed; instructor: folded",
    )
    parser.add_argument("--out", help="output folder (build/book, or build/book-instructor)")
    parser.add_argument("--handout-url", help="the public hand-out's GitHub repository")
    parser.add_argument("--handout-ref", help="its release tag (with --handout-url)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="only these notebooks (stems), for a partial build",
    )
    parser.add_argument("--jobs", default="1", help="Sphinx's -j (default 1)")
    args = parser.parse_args(argv)

    try:
        handout = None
        if args.handout_url or args.handout_ref:
            if not (args.handout_url and args.handout_ref):
                raise BookError("give both --handout-url and --handout-ref")
            handout = Handout(args.handout_url, args.handout_ref)
        book = build(
            args.demo,
            args.out,
            edition=args.edition,
            handout=handout,
            only=args.only,
            jobs=args.jobs,
        )
    except BookError as err:
        print(f"book: {err}", file=sys.stderr)
        return 1
    colab = (
        f"Colab links to {book.handout.slug}@{book.handout.ref}"
        if book.handout
        else ("no Colab links (no public hand-out configured)")
    )
    print(f"book ({book.edition}): {len(book.pages)} pages in {book.seconds:.0f} s; {colab}")
    print(f"open {Path(book.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
