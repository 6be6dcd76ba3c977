"""Command line: grade one submission, check locally, grade a batch, export written answers.

    python -m autograder grade SUBMISSION [--assignment auto|NAME[,NAME...]|all]
                               [--results results.json] [--seed S] [--require-manifest]
    python -m autograder check NAME [--part PART] [--submission starter_code] [--results FILE]
    python -m autograder answers SUBMISSION|SUBMISSIONS_DIR [--out answers.md]
    python -m autograder batch SUBMISSIONS_DIR --out grades.csv [--assignment auto|NAME]
                               [--jobs N] [--results-dir DIR] [--seed S]
    python -m autograder record NAME [NAME ...] [--no-verify]
    python -m autograder mistakes [NAME ...] [--markdown]

``grade`` checks the submission's ``MANIFEST.json`` (written by ``python -m replearn.submit``)
against the files themselves and reports a mismatch in ``results.json`` (see
``autograder.manifest``); ``check`` runs the public tests of one assignment, or of one part
of it (``--part rotation`` selects the tests of the student functions named ``rotation*``), with
the grader's own messages; ``answers`` writes the free-response answers of a submission's
notebooks, or of a folder of submissions question by question across the students, with the
figures the questions ask about, to one Markdown file for the people who grade them;
``batch`` grades a folder of submissions (``autograder.batch``); ``record`` stores the
reference's values that the public tests compare with, and what each known mistake gives on
them; ``mistakes`` lists the recorded known mistakes (function, id, message; never code). The Gradescope autograder zip is
instructor tooling: ``python -m instructor.gradescope`` (its ``run_autograder`` calls ``grade``).

``--tests-root`` / ``--solutions-root`` (or ``AUTOGRADER_TESTS_ROOT`` /
``AUTOGRADER_SOLUTIONS_ROOT``) point the grader at another set of tests and references.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
from pathlib import Path


def _roots(args) -> None:
    if getattr(args, "tests_root", None):
        os.environ["AUTOGRADER_TESTS_ROOT"] = str(Path(args.tests_root).resolve())
    if getattr(args, "solutions_root", None):
        os.environ["AUTOGRADER_SOLUTIONS_ROOT"] = str(Path(args.solutions_root).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("grade", "check", "answers", "batch", "record", "mistakes"):
        p = sub.add_parser(name)
        p.add_argument("--tests-root", help="folder holding <module>/test_*.py")
        p.add_argument("--solutions-root", help="folder holding the reference <module>.py")
        if name == "grade":
            p.add_argument("submission", type=Path, help="folder or .zip of the student's files")
            p.add_argument(
                "--assignment",
                default="auto",
                help="'auto' (default): the assignment the submission's MANIFEST.json names, "
                "else those whose module files it holds (all if it holds none); a name or "
                "alias, several separated by commas, or 'all'",
            )
            p.add_argument("--results", type=Path, default=Path("results.json"))
            p.add_argument("--seed", type=int, help="reuse a recorded hidden-test seed")
            p.add_argument("--budget", type=float, help="overall time budget in seconds")
            p.add_argument(
                "--require-manifest",
                action="store_true",
                help="refuse (score 0) a submission without a MANIFEST.json that matches its files",
            )
        elif name == "check":
            p.add_argument("name", help="assignment name or alias (e.g. transfer_learning, 01)")
            p.add_argument("--submission", type=Path, default=Path("starter_code"))
            p.add_argument(
                "--part",
                help="only the tests of this part: a student function (or its prefix, e.g. "
                "'rotation'), a class, or a test name; unknown names list the parts",
            )
            p.add_argument("--results", type=Path, help="also write the results JSON here")
        elif name == "answers":
            p.add_argument(
                "submission",
                type=Path,
                help="one submission (folder or .zip), or a folder of submissions (one folder or "
                ".zip per student): then the answers are grouped by question",
            )
            p.add_argument("--out", type=Path, default=Path("answers.md"))
        elif name == "record":
            p.add_argument(
                "names", nargs="+", metavar="name", help="assignment names or aliases, or all"
            )
            p.add_argument(
                "--no-verify",
                action="store_true",
                help="skip replaying the tests from the recording (they must give full marks, "
                "and name every known mistake); the mistakes' names are then worked out from the "
                "recording alone",
            )
            p.add_argument(
                "--verdicts",
                type=Path,
                help="write what each known mistake's public tests gave here (JSON)",
            )
        elif name == "mistakes":
            p.add_argument(
                "names",
                nargs="*",
                metavar="name",
                help="assignment names or aliases (default: all)",
            )
            p.add_argument("--markdown", action="store_true", help="one Markdown table")
        elif name == "batch":
            p.add_argument("submissions", type=Path, help="folder of submission folders/zips")
            p.add_argument("--out", type=Path, default=Path("grades.csv"))
            p.add_argument("--jobs", type=int, default=1)
            p.add_argument(
                "--assignment",
                default="auto",
                help="'auto' (default): each submission on the assignment it holds; or a name",
            )
            p.add_argument(
                "--timeout",
                type=float,
                default=None,
                help="seconds per submission before it is stopped",
            )
            p.add_argument(
                "--results-dir",
                type=Path,
                help="where each student's results.json and grader log go (default: the CSV's "
                "name + _results, beside it)",
            )
            p.add_argument("--seed", type=int, help="one hidden-test seed for every submission")
    args = parser.parse_args(argv)
    _roots(args)
    from autograder import lifeline, results
    from replearn.contract import assignments

    lifeline.from_environment()  # a `grade` started by `batch` dies with it

    try:
        if args.command == "grade":
            targets = (
                submitted_assignments(args.submission)
                if args.assignment == "auto"
                else resolve_many(args.assignment)
            )
            data = grade_with_manifest(
                args.submission,
                targets,
                args.results,
                seed=args.seed,
                budget_s=args.budget,
                require_manifest=args.require_manifest,
            )
            print(results.summary(data))
            print(f"results written to {args.results}")
            return 0
        if args.command == "check":
            targets = assignments.resolve(args.name)
            if not args.submission.exists():
                print(
                    f"no folder {args.submission}: run this where your starter_code/ is, "
                    "or pass --submission PATH",
                    file=sys.stderr,
                )
                return 2
            data = check(args.submission, targets, part=args.part)
            if args.results:
                results.write_atomic(args.results, data)
            print(results.summary(data))
            return 0
        if args.command == "answers":
            from autograder.answers import NoAnswersError, write_answers

            if not args.submission.exists():
                print(f"no file or folder {args.submission}", file=sys.stderr)
                return 2
            try:
                summary = write_answers(args.submission, args.out)
            except NoAnswersError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            print(summary)
            return 0
        if args.command == "record":
            targets = {a.name: a for name in args.names for a in assignments.resolve(name)}
            return _record(
                list(targets.values()), verify=not args.no_verify, verdicts_out=args.verdicts
            )
        if args.command == "mistakes":
            targets = {
                a.name: a for name in args.names or ["all"] for a in assignments.resolve(name)
            }
            print(list_mistakes(list(targets.values()), markdown=args.markdown))
            return 0
        if args.command == "batch":
            from autograder.batch import run_batch

            try:
                return run_batch(
                    args.submissions,
                    args.out,
                    jobs=args.jobs,
                    assignment=args.assignment,
                    timeout=args.timeout,
                    results_dir=args.results_dir,
                    seed=args.seed,
                )
            except FileNotFoundError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        raise AssertionError(f"unhandled command {args.command}")  # argparse allows no other
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2


def grade_with_manifest(
    source: Path,
    targets,
    results_path: Path,
    *,
    seed: int | None = None,
    budget_s: float | None = None,
    require_manifest: bool = False,
) -> dict:
    """Grade ``source`` and put the verdict on its manifest into ``results.json``.

    The manifest is checked first, on a staged copy made with the grading rules. A mismatch
    is reported (a note on top and a visible 0-point test), never hidden; under
    ``require_manifest`` a submission without a matching manifest is not graded at all.
    """
    from autograder import manifest, results, runner

    verdict = manifest.verify_source(Path(source), {a.module for a in targets})
    if require_manifest and verdict.status != "verified":
        data = manifest.refused(verdict)
        results.write_atomic(results_path, data)
        return data
    data = runner.grade(source, targets, results_path, seed=seed, budget_s=budget_s)
    data = manifest.apply(data, verdict)
    results.write_atomic(results_path, data)
    return data


# --------------------------------------------------------------------------------------------
# Self-check by part
# --------------------------------------------------------------------------------------------


def _string_args(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def test_functions(tests_dir: Path) -> dict[str, list[str]]:
    """``{public test name: student functions it exercises}``, read from the test files' AST.

    The functions are the ``@pytest.mark.functions(...)`` names and the first argument of every
    ``student.call("name", ...)`` in the test body. Nothing is imported or executed.
    """
    found: dict[str, list[str]] = {}
    for path in sorted(Path(tests_dir).glob("test_public_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            names: list[str] = []
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("mark.functions"):
                    names += _string_args(deco)
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "call"
                    and ast.unparse(call.func.value) == "student"
                ):
                    names += _string_args(call)[:1]
            found[node.name] = list(dict.fromkeys(names))
    return found


def _matches(part: str, function: str) -> bool:
    return function == part or function.startswith((f"{part}_", f"{part}."))


def part_tests(tests_dir: Path, part: str) -> set[str]:
    """Names of the public tests of ``part``; ``KeyError`` listing the parts when none match."""
    table = test_functions(tests_dir)
    chosen = {
        test
        for test, functions in table.items()
        if test == part or any(_matches(part, f) for f in functions)
    }
    if not chosen:
        parts = sorted({f for functions in table.values() for f in functions})
        raise KeyError(
            f"no public test of {Path(tests_dir).name} checks a part called {part!r}; parts: "
            + (", ".join(parts) or "none")
            + " (a prefix such as the word before '_' selects several)"
        )
    return chosen


def _test_name(record: dict) -> str:
    """``"assignment: test_x[param]"`` -> ``"test_x"``."""
    return re.sub(r"\[.*\]$", "", str(record.get("name", "")).split(": ", 1)[-1])


def check(source: Path, targets, *, part: str | None = None) -> dict:
    """The public tests of ``targets`` on ``source``, as the grader runs them (seed 0).

    With ``part``, only the tests of that part are reported and scored (all public tests of the
    assignment still run: the grader's session selects by assignment, not by test).
    """
    from autograder import runner

    selected: set[str] | None = None
    if part:
        if len(targets) != 1:
            raise KeyError("--part needs one assignment, not 'all'")
        selected = part_tests(targets[0].tests_dir, part)
    with tempfile.TemporaryDirectory() as tmp:
        data = runner.grade(
            source, targets, Path(tmp) / "results.json", public_only=True, seed=0, quiet=True
        )
    if selected is None:
        return data
    tests = [t for t in data.get("tests", []) if _test_name(t) in selected]
    return {
        **data,
        "tests": tests,
        "score": round(sum(t.get("score", 0.0) for t in tests), 4),
        "max_score": sum(t.get("max_score", 0.0) for t in tests),
        "output": "\n".join(
            filter(None, [f"part {part!r}: {len(tests)} public test(s)", data.get("output")])
        ),
    }


def _record(targets, verify: bool = True, verdicts_out: Path | None = None) -> int:
    """Record the reference values of the public tests, and what the catalogued mistakes give
    on them, for the student hand-out.

    Grades the reference solutions with ``expected()`` in record mode, every catalogued mistake
    (``autograder.mistakes``) beside it, then checks from the recordings alone, as the hand-out
    would, that the reference gets full public marks and that every mistake fails a public test
    that names it. Every assignment asked for is graded in one session.
    """
    from autograder import api, codec, mistakes, runner
    from autograder.results import write_bytes_atomic
    from replearn.contract import assignments

    targets = list(targets)
    catalogues = {t.module: mistakes.load_catalogue(t.tests_dir) for t in targets}
    catalogues = {module: c for module, c in catalogues.items() if c}
    for target in targets:
        (target.tests_dir / api.EXPECTED_FILE).unlink(missing_ok=True)
        (target.tests_dir / mistakes.RECORD_FILE).unlink(missing_ok=True)
    scores: list[dict[str, tuple[float, float]]] = []  # per mode: assignment -> (got, out of)
    verdicts: dict = {}
    for mode in ("record", "recorded") if verify else ("record",):
        os.environ[api.EXPECTED_MODE_ENV] = mode
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "variants.agv"
                variants = {
                    "mistakes": catalogues,
                    "mode": "record" if mode == "record" else "replay",
                    "out": out,
                }
                data = runner.grade(
                    assignments.solutions_root(),
                    targets,
                    Path(tmp) / "results.json",
                    public_only=True,
                    seed=0,
                    quiet=True,
                    variants=variants if catalogues else None,
                )
                verdicts = codec.decode(out.read_bytes())[1] if out.exists() else {}
        finally:
            os.environ.pop(api.EXPECTED_MODE_ENV, None)
        if mode == "record":
            for module, catalogue in catalogues.items():
                captured = {
                    m.key: {
                        test: outcome["point"]
                        for test, outcome in verdicts.get(f"{module}:{m.key}", {}).items()
                        if outcome.get("point") is not None
                    }
                    for m in catalogue
                }
                table = mistakes.build_table(catalogue, captured)
                path = assignments.tests_root() / module / mistakes.RECORD_FILE
                write_bytes_atomic(path, codec.encode(table), mode=0o644)
        per_target: dict[str, tuple[float, float]] = {}
        for test in data["tests"]:
            for name in test.get("tags", []):
                got, out_of = per_target.get(name, (0.0, 0.0))
                per_target[name] = (got + test["score"], out_of + test["max_score"])
        scores.append(per_target)
    if not verify:  # what the hand-out would name, worked out from the recording alone
        mistakes.forget_tables()
        for module in catalogues:
            table = mistakes.table(assignments.tests_root() / module)
            mistakes.name_from_table(table, verdicts, module)
    if verdicts_out is not None:
        plain = {
            key: {
                test: {k: v for k, v in outcome.items() if k != "point"}
                for test, outcome in outcomes.items()
            }
            for key, outcomes in verdicts.items()
        }
        Path(verdicts_out).write_text(json.dumps(plain, indent=1, sort_keys=True))
    failed = 0
    for target in targets:
        path = target.tests_dir / api.EXPECTED_FILE
        got, out_of = scores[0].get(target.name, (0.0, 0.0))
        replayed, _ = scores[-1].get(target.name, (0.0, 0.0))
        uses_expected = any(
            "expected(" in f.read_text() for f in target.tests_dir.glob("test_public_*.py")
        )
        ok = got == out_of == replayed and out_of > 0 and (path.exists() or not uses_expected)
        failed += not ok
        print(
            f"{target.name}: reference {got:g}/{out_of:g} while recording, {replayed:g}/{out_of:g}"
            f" from the recording -> {path if path.exists() else 'nothing recorded'}"
            + ("" if ok else "  PROBLEM: the reference must score full marks both ways")
        )
        catalogue = catalogues.get(target.module, [])
        if catalogue:
            problems = mistakes.variant_problems(catalogue, verdicts, target.module, hidden=False)
            bad = {k: v for k, v in problems.items() if v}
            failed += bool(bad)
            print(
                f"{target.name}: {len(catalogue) - len(bad)} of {len(catalogue)} known mistakes "
                "named by the public checks from the recording"
                + ("" if verify else " (worked out from the recording, not replayed)")
            )
            for mistake in catalogue:
                for problem in bad.get(mistake.key, []):
                    print(f"  PROBLEM {mistake.key}: {problem}")
    return 1 if failed else 0


def list_mistakes(targets, *, markdown: bool = False) -> str:
    """The recorded known mistakes of ``targets``, counted per assignment: function, id, the
    message a student gets, and the public tests that name it (from the recordings: words only).
    """
    from autograder import mistakes

    lines, total = [], 0
    if markdown:
        lines += ["| assignment | function | mistake | message |", "|---|---|---|---|"]
    for target in targets:
        entries = mistakes.listing(target.tests_dir)
        total += len(entries)
        if not markdown:
            lines.append(f"{target.name}: {len(entries)} known mistakes")
        for e in entries:
            if markdown:
                message = e["message"].replace("|", "\\|")
                lines.append(f"| {target.name} | `{e['function']}` | {e['id']} | {message} |")
            else:
                tests = ", ".join(e["tests"]) or "no public test names it"
                lines.append(f"  {e['function']} / {e['id']}: {e['message']}  [{tests}]")
    lines.append(f"{total} known mistakes in {len(targets)} assignment(s)")
    return "\n".join(lines)


def resolve_many(names: str) -> list:
    """``"a,b"`` -> the assignments named (aliases and ``all`` allowed), each once, in order."""
    from replearn.contract import assignments

    found = []
    for name in (n.strip() for n in names.split(",")):
        for a in assignments.resolve(name):
            if a not in found:
                found.append(a)
    return found


def submitted_assignments(source: Path) -> list:
    """The assignment a submission (folder or zip) is for; all of them if it says nothing.

    Its ``MANIFEST.json`` (written by ``python -m replearn.submit``) names the assignment; a
    submission without one is for the assignments whose ``<module>.py`` it holds. Only names are
    read (nothing is imported; a zip's manifest is read with a size cap). A submission of one
    assignment is then graded out of that assignment's points.
    """
    import json
    import zipfile

    from replearn.contract import assignments
    from replearn.contract.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES

    source = Path(source)
    claimed = None
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                names = {Path(n).name for n in archive.namelist()}
                manifests = [
                    i for i in archive.infolist() if Path(i.filename).name == MANIFEST_NAME
                ]
                if len(manifests) == 1 and manifests[0].file_size <= MAX_MANIFEST_BYTES:
                    claimed = json.loads(archive.read(manifests[0]))
        elif source.is_dir():
            names = {p.name for p in source.rglob("*.py")}
            found = sorted(source.rglob(MANIFEST_NAME))
            if len(found) == 1 and found[0].stat().st_size <= MAX_MANIFEST_BYTES:
                claimed = json.loads(found[0].read_bytes())
        else:
            names = set()
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError):
        names = set()
    options = assignments.resolve("all")
    if type(claimed) is dict:
        named = [a for a in options if claimed.get("assignment") in (a.name, a.module)]
        if named:
            return named
    return [a for a in options if f"{a.module}.py" in names] or options
