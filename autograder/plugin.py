"""pytest plugin of the trusted parent: the ``student`` fixture, markers, results.json.

Loaded as ``-p autograder.plugin`` by ``autograder.runner`` with ``--ag-config <json>``. The
parent never imports student code: ``student.call`` and ``student.probe`` go through
``autograder.sandbox``. After every test the plugin rewrites ``results.json`` atomically; a
provisional all-zero file exists from collection on, and a global time budget marks the
tests it cannot start as "not run".
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch

from autograder import GRADER_DIR, REPO_ROOT, api, banned, environment, sandbox
from autograder.results import sanitize, write_atomic

GRADER_FILES = {"api.py", "sandbox.py", "plugin.py", "codec.py"}
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
TEST_OUTPUT_CAP = 4000
IMPORT_LIMIT_S = 20.0  # the one import check per module: the module imports torch from the zygote


def pytest_addoption(parser):
    parser.addoption("--ag-config", default=None, help="grading session config (JSON file)")


def pytest_configure(config):
    path = config.getoption("--ag-config")
    if path:
        config.pluginmanager.register(GradingSession(json.loads(Path(path).read_text())), "ag")


def _seed_for(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class GradingSession:
    """State of one grading run: records per test, the sandbox, budgets, findings."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.start = time.monotonic()
        self.deadline = self.start + float(cfg["budget_s"])
        self.results_path = Path(cfg["results"])
        self.assignments = {a["module"]: a for a in cfg["assignments"]}
        self.assignment_start: dict[str, float] = {}
        self.records: dict[str, dict] = {}
        self.items: dict[str, pytest.Item] = {}
        self.sandbox: sandbox.Sandbox | None = None
        self.banned: dict[str, dict[str, list[str]]] = {}
        self.findings: dict[str, list[banned.Finding]] = {}
        self.missing = environment.missing()  # the grader's own packages this image lacks
        # catalogued mistakes graded beside the submission (``autograder.mistakes``): the
        # instructor's ``record`` and the catalogue's own tests; never a student's grading
        self.imports: dict[str, sandbox.CallOutcome] = {}  # module -> its one import check
        self.variants: list[dict] = list(cfg.get("variants", []))
        self.variant_capture = cfg.get("variant_mode") == "record"
        self.variant_results: dict[str, dict[str, dict]] = {}
        self.grader_errors: list[str] = []
        for module, a in self.assignments.items():
            listed_in = Path(a["reference"])
            if not listed_in.exists():  # student hand-out: the generated stub states the same list
                listed_in = REPO_ROOT / "starter_code" / f"{module}.py"
            self.banned[module] = banned.read_banned(listed_in)
            src = Path(cfg["submission_dir"]) / f"{module}.py"
            text = src.read_text(errors="replace") if src.exists() else ""
            self.findings[module] = banned.scan(text, self.banned[module])

    # --------------------------------------------------------------------------- sandbox
    def get_sandbox(self) -> sandbox.Sandbox:
        if self.sandbox is None:
            probes = ["autograder.probes.common"] + [
                f"autograder.probes.{m}"
                for m in self.assignments
                if (GRADER_DIR / "probes" / f"{m}.py").exists()
            ]
            extra = [m for m in ("torchvision", "replearn") if _importable(m)]
            replearn_dir = REPO_ROOT / "replearn"
            extra += [f"replearn.{p.stem}" for p in sorted(replearn_dir.glob("[a-z]*.py"))]
            # owners of banned APIs, so that the run-time recorder can wrap them up front
            for apis in (a for table in self.banned.values() for a in table.values()):
                for api_name in apis:
                    owner = api_name.rpartition(".")[0]
                    while owner and not _importable_quiet(owner):
                        owner = owner.rpartition(".")[0]
                    if owner and owner not in extra:
                        extra.append(owner)
            self.sandbox = sandbox.Sandbox(
                Path(self.cfg["submission_dir"]),
                self.cfg["worker_files"],
                [Path(p) for p in self.cfg["hide"]],
                preimport=sandbox.PREIMPORT + extra + probes,
            )
        return self.sandbox

    def import_check(self, module: str, timeout: float) -> sandbox.CallOutcome:
        """Import ``module`` once, alone, in a worker; every later call reuses the verdict.

        A module that hangs or crashes at import would otherwise cost every call of every
        test its own timeout, and ``--assignment all`` many minutes: it costs one import limit
        per assignment, and every test of it fails saying why.
        """
        if module not in self.imports:
            self.imports[module] = self.get_sandbox().call(
                module, "", kind="import", timeout=timeout, seed=0
            )
        return self.imports[module]

    # -------------------------------------------------------------------------- records
    def assignment_of(self, item: pytest.Item) -> dict:
        rel = Path(item.path).resolve().relative_to(Path(self.cfg["tests_root"]))
        return self.assignments[rel.parts[0]]

    @staticmethod
    def is_hidden_file(item: pytest.Item) -> bool:
        path = Path(item.path)
        return path.name.startswith("test_hidden_") or "hidden" in path.parts[:-1]

    def visibility(self, item: pytest.Item) -> str:
        marker = item.get_closest_marker("visibility")
        if marker and marker.args and marker.args[0] in VISIBILITIES:
            level = marker.args[0]
        else:
            level = "after_published" if self.is_hidden_file(item) else "visible"
        if self.is_hidden_file(item) and level == "visible":
            level = "after_published"  # a hidden test file never shows as a public test
        return level

    @staticmethod
    def weight(item: pytest.Item) -> float:
        marker = item.get_closest_marker("weight")
        value = float(marker.args[0]) if marker and marker.args else 1.0
        return value if math.isfinite(value) and value >= 0 else 0.0

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        if self.cfg.get("public_only"):
            kept = [i for i in items if not self.is_hidden_file(i)]
            config.hook.pytest_deselected(items=[i for i in items if self.is_hidden_file(i)])
            items[:] = kept
        counters: dict[str, int] = {}
        for item in items:
            a = self.assignment_of(item)
            counters[a["module"]] = counters.get(a["module"], 0) + 1
            hidden = self.is_hidden_file(item)
            self.items[item.nodeid] = item
            self.records[item.nodeid] = {
                "name": f"{a['name']}: {item.name}",
                "number": f"{a['number']}.{counters[a['module']]}",
                "score": 0.0,
                "max_score": self.weight(item),
                "status": "failed",
                "visibility": self.visibility(item),
                "output": "not run: the grader stopped before this test",
                "tags": [a["name"]],
                "extra_data": {"seed": self.cfg["seed"]} if hidden else {},
            }
        self.write(final=False)

    def write(self, *, final: bool) -> None:
        tests = list(self.records.values())
        score = sum(t["score"] for t in tests)
        max_score = sum(t["max_score"] for t in tests)
        notes = list(self.cfg.get("notes", []))
        if self.missing:
            notes.append(
                "GRADING ENVIRONMENT INCOMPLETE (not your fault): the grader cannot import "
                + ", ".join(self.missing)
                + "; checks that need them are marked as the grader's errors. Course staff: "
                "install the autograder's requirements.txt and grade again."
            )
        if self.grader_errors:
            notes.append(
                f"{len(self.grader_errors)} check(s) failed because of the grading environment, "
                "not your code: " + ", ".join(self.grader_errors[:10])
            )
        for found in self.findings.values():
            notes += [f"banned API: {f.message()}" for f in found]
        if not final:
            notes.append("grading in progress (this file is rewritten after every test)")
        data = {
            "score": round(min(max(score, 0.0), max_score), 4),
            "max_score": max_score,
            "execution_time": round(time.monotonic() - self.start, 2),
            "output": sanitize("\n".join(notes), 8000),
            "output_format": "text",
            "stdout_visibility": "hidden",
            "tests": tests,
        }
        write_atomic(self.results_path, data)

    # --------------------------------------------------------------------------- running
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        a = self.assignment_of(item)
        now = time.monotonic()
        first = self.assignment_start.setdefault(a["module"], now)
        reason = None
        if now > self.deadline:
            reason = "the grader's overall time budget ran out before this test"
        elif now - first > float(a["budget_s"]):
            reason = f"the time budget of {a['name']} ran out before this test"
        if reason is None:
            return None
        record = self.records[item.nodeid]
        record.update(status="failed", score=0.0, output=f"not run: {reason}")
        record["extra_data"]["not_run"] = True
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        self.write(final=False)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        state = item.stash.setdefault(_STATE, {"errors": [], "skipped": None})
        if call.excinfo is not None and report.failed:
            state["errors"].append((call.when, call.excinfo))
        elif report.skipped and state["skipped"] is None:
            state["skipped"] = str(getattr(report, "longrepr", ""))[-300:]
        if call.when == "teardown":
            self.finish(item, state)
        return report

    def finish(self, item: pytest.Item, state: dict) -> None:
        record = self.records.get(item.nodeid)
        if record is None:
            return
        hidden = self.is_hidden_file(item)
        handle: Student | None = item.stash.get(_STUDENT, None)
        lines: list[str] = []
        if state["errors"]:
            when, excinfo = state["errors"][0]
            dist = _grader_dependency(excinfo, self.missing)
            if dist is not None:
                lines.append(environment.blame_text(dist))
                record["extra_data"]["grader_error"] = f"missing package {dist}"
                self.grader_errors.append(record["name"])
            else:
                lines.append(_message(excinfo, hidden, when))
                found = item.stash.get(_FOUND, []) if not hidden else []
                if found:
                    record["extra_data"]["known_mistakes"] = found
            record.update(status="failed", score=0.0)
        elif state["skipped"] is not None:
            lines.append("not run: skipped by the grader")
            record.update(status="failed", score=0.0)
        else:
            record.update(status="passed", score=record["max_score"])
            lines.append("passed")
            if handle is not None and handle.checked:
                lines.append("checked: " + "; ".join(handle.checked))
        if handle is not None:
            record["extra_data"].update(handle.extra)
            if handle.output and not hidden:
                lines.append("--- output of your code (truncated, for your information) ---")
                lines.append(sanitize(handle.output, TEST_OUTPUT_CAP))
        record["output"] = sanitize("\n".join(lines), 12000)
        self.write(final=False)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.sandbox is not None:
            self.sandbox.close()
        if self.cfg.get("variant_out"):
            from autograder import codec

            Path(self.cfg["variant_out"]).write_bytes(codec.encode(self.variant_results))
        self.write(final=True)

    # -------------------------------------------------------------------------- variants
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        try:
            return (yield)
        finally:
            item.stash[_FOUND] = api.found_mistakes()
            if self.variants:
                self.run_variants(item)

    def run_variants(self, item: pytest.Item) -> None:
        """Run ``item`` once more for every catalogued variant of a function it grades, each
        variant's calls in workers of their own; keep how it ended (and, while recording, the
        first check it failed)."""
        a = self.assignment_of(item)
        hidden = self.is_hidden_file(item)
        main: Student | None = item.stash.get(_STUDENT, None)
        if main is None:
            return
        declared = set(main.declared) | _called_functions(item.obj)
        for variant in self.variants:
            function = variant["function"]  # a class named in the marker covers its methods
            if variant["module"] != a["module"] or not any(
                function == d or function.startswith(d + ".") for d in declared
            ):
                continue
            student = Student(
                self,
                a,
                main.seed,
                hidden,
                main.default_timeout,
                main.declared,
                variant=variant["folder"],
            )
            api.set_hidden(hidden)
            api.begin_test(
                Path(item.path).parent,
                item.name,
                variant=True,
                capture=self.variant_capture and not hidden,
            )
            funcargs = {**item.funcargs, "student": student}
            args = {k: funcargs[k] for k in item._fixtureinfo.argnames if k in funcargs}
            outcome: dict[str, Any] = {"hidden": hidden}
            try:
                item.obj(**args)
                outcome.update(passed=True, message="passed")
            except Exception as exc:  # noqa: BLE001  (the variant fails as a student would)
                outcome.update(passed=False, message=_variant_message(exc, hidden))
                outcome["known_mistakes"] = api.found_mistakes()
                outcome["point"] = api.captured()
            finally:
                api.set_hidden(hidden)
                api.begin_test(Path(item.path).parent, item.name)
            self.variant_results.setdefault(variant["id"], {})[item.name] = outcome

    # --------------------------------------------------------------------------- fixture
    @pytest.fixture
    def student(self, request) -> Student:
        item = request.node
        a = self.assignment_of(item)
        hidden = self.is_hidden_file(item)
        rel = f"{a['module']}/{Path(item.path).name}::{item.name}"
        seed = _seed_for("hidden", self.cfg["seed"], rel) if hidden else _seed_for("public", rel)
        marker = item.get_closest_marker("timeout")
        timeout = float(marker.args[0]) if marker and marker.args else float(a["call_timeout_s"])
        declared = item.get_closest_marker("functions")
        handle = Student(self, a, seed, hidden, timeout, declared.args if declared else ())
        item.stash[_STUDENT] = handle
        api.set_hidden(hidden)
        api.begin_test(Path(item.path).parent, item.name)
        for finding in self.findings.get(a["module"], []):
            if finding.function in handle.declared:
                raise api.StudentCodeError(finding.message())
        try:
            yield handle
        finally:
            api.set_hidden(False)
            api.begin_test(None, None)


_STATE = pytest.StashKey[dict]()
_STUDENT = pytest.StashKey[Any]()
_FOUND = pytest.StashKey[list]()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _importable_quiet(name: str) -> bool:
    try:
        return _importable(name)
    except (ImportError, ValueError, AttributeError):
        return False


def _from_grader(excinfo) -> bool:
    """Was the exception raised by the grader's own checks (api/sandbox), not test asserts?"""
    for entry in reversed(traceback.extract_tb(excinfo.tb)):
        return Path(entry.filename).name in GRADER_FILES and "autograder" in entry.filename
    return False


def _grader_dependency(excinfo, absent: list[str]) -> str | None:
    """The grader's package whose absence made this check fail (in the parent or a worker)."""
    exc = excinfo.value
    if isinstance(exc, api.GraderEnvironmentError):
        return exc.distribution
    if isinstance(exc, ImportError):
        return environment.grader_dependency(type(exc).__name__, str(exc), absent)
    return None


def _message(excinfo, hidden: bool, when: str) -> str:
    exc = excinfo.value
    if isinstance(exc, AssertionError):
        text = str(exc)
        if hidden and not (isinstance(exc, api.StudentCodeError) or _from_grader(excinfo)):
            return "failed (hidden test; its details stay hidden)"
        return text.strip() or "failed"
    where = "setting up" if when == "setup" else "running"
    if hidden:
        return f"failed: the grader could not use your answer while {where} this check ({type(exc).__name__})"
    return (
        f"failed: the grader could not use your answer while {where} this check: "
        f"{type(exc).__name__}: {str(exc)[:500]}"
    )


def _called_functions(fn) -> set[str]:
    """The first argument of every ``student.call("name", ...)`` in a test function's source."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return set()
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "call"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def _variant_message(exc: BaseException, hidden: bool) -> str:
    if isinstance(exc, AssertionError):
        return str(exc).strip() or "failed"
    return f"{type(exc).__name__}: {str(exc)[:500]}"


class Student:
    """The ``student`` fixture: calls into the submission, each in a fresh worker.

    ``variant`` (the grader's own runs of catalogued mistakes only): the folder of the
    submission that holds the variant's module instead of the submitted one.
    """

    def __init__(self, session, assignment, seed, hidden, timeout, declared, variant=None):
        self._session = session
        self.assignment = assignment
        self.module = assignment["module"]
        self.hidden = hidden
        self.seed = seed
        self.rng = torch.Generator().manual_seed(seed)
        self.default_timeout = timeout
        self.declared = tuple(declared)
        self.output = ""
        self.checked: list[str] = []
        self.extra: dict = {}
        self.variant = variant
        self._calls = 0

    def _banned_for(self, names) -> None:
        for finding in self._session.findings.get(self.module, []):
            if finding.function in names:
                raise api.StudentCodeError(finding.message())

    def call(
        self,
        func_name: str,
        *args,
        timeout: float | None = None,
        check_inputs_unchanged: bool = False,
        **kwargs,
    ):
        """``<module>.func_name(*args, **kwargs)`` in a fresh worker; returns plain data."""
        self._banned_for({func_name, *self.declared})
        return self._run(
            "call", func_name, args, kwargs, timeout, check_inputs_unchanged, label=func_name
        )

    def probe(self, target: str, *args, timeout: float | None = None, **kwargs):
        """Trusted ``autograder.probes.<module>:<fn>`` run as ``fn(student_module, *args)``."""
        mod, _, fn = target.partition(":")
        if not mod.startswith("autograder.probes.") or not fn.isidentifier():
            raise ValueError(f"probe {target!r} must be 'autograder.probes.<module>:<function>'")
        self._banned_for(set(self.declared))
        return self._run("probe", target, args, kwargs, timeout, False, label=fn)

    def artefact(self, name: str, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
        """Read a submitted ``.safetensors`` file in the PARENT with the checked loader.

        Its size limit is ``max_bytes``, else what the assignment's ``submission.json`` declares
        (the packager's limit too), else the grader's limit for any file.
        """
        from replearn.contract import artefacts
        from replearn.contract.artefacts import load_safetensors
        from replearn.contract.files import MAX_FILE_BYTES

        if max_bytes is None:
            declared = artefacts.declared(self.module).get(name, {})
            max_bytes = declared.get("max_bytes", MAX_FILE_BYTES)
        path = Path(self._session.cfg["submission_dir"]) / name
        try:
            return load_safetensors(path, max_bytes=max_bytes)
        except ValueError as exc:
            raise api.StudentCodeError(str(exc)) from None

    def _run(self, kind, target, args, kwargs, timeout, check_inputs, *, label):
        self._calls += 1
        limit = float(timeout if timeout is not None else self.default_timeout)
        remaining = self._session.deadline - time.monotonic()
        limit = max(1.0, min(limit, remaining))
        if self.variant is None:
            import_limit = max(1.0, min(IMPORT_LIMIT_S, self.default_timeout, remaining))
            imported = self._session.import_check(self.module, import_limit)
            if imported.status != "ok":
                what = f"{label}({_describe_args(args, kwargs, self.hidden)})"
                raise api.StudentCodeError(
                    _import_failure_text(self.module, what, imported, self.hidden)
                )
        call_seed = _seed_for(self.seed, self._calls)
        banned_map = self._session.banned.get(self.module, {})
        outcome = self._session.get_sandbox().call(
            self.module,
            target,
            tuple(args),
            kwargs,
            kind=kind,
            timeout=limit,
            seed=call_seed,
            banned=banned_map,
            return_args=check_inputs,
            variant=self.variant,
        )
        if outcome.output_bytes:
            self.output += outcome.output
            if outcome.output_bytes > len(outcome.output):
                self.output += f"\n[... {outcome.output_bytes - len(outcome.output)} more bytes]"
        self.extra.setdefault("calls", []).append(
            {"target": target, "status": outcome.status, "seconds": round(outcome.seconds, 3)}
        )
        what = f"{label}({_describe_args(args, kwargs, self.hidden)})"
        if outcome.banned_used:
            fn, used = outcome.banned_used[0]
            raise api.StudentCodeError(
                f"{fn} called {used} while running {what}, which this assignment forbids; "
                f"write it with basic tensor operations instead. Tests of {fn} score 0."
            )
        if outcome.status == "exception":
            dist = environment.grader_dependency(
                outcome.exc_type, outcome.exc_msg, self._session.missing
            )
            if dist is not None:
                raise api.GraderEnvironmentError(dist)
        if outcome.status == "ok":
            if check_inputs:
                _check_unchanged(label, args, outcome.returned_args)
            self.checked.append(what)
            return outcome.value
        raise api.StudentCodeError(_failure_text(self.module, what, outcome, limit, self.hidden))


def _describe_args(args, kwargs, hidden: bool) -> str:
    """Shapes and dtypes of the inputs; plain values only in public tests."""

    def one(v):
        if isinstance(v, torch.Tensor):
            return f"tensor{api._fmt_shape(v.shape)} {str(v.dtype).replace('torch.', '')}"
        if not hidden and isinstance(v, (int, float, bool, str)) and len(repr(v)) < 30:
            return repr(v)
        return type(v).__name__

    parts = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _check_unchanged(label, sent, returned) -> None:
    if returned is None or len(returned) != len(sent):
        raise api.StudentCodeError(f"{label}: the grader could not read back the inputs")
    for i, (a, b) in enumerate(zip(sent, returned)):
        if isinstance(a, torch.Tensor):
            same = isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
            if not (same and torch.equal(a, b.detach())):
                raise api.StudentCodeError(
                    f"{label} modified its input argument {i} (shape {api._fmt_shape(a.shape)}) "
                    "in place; it must leave its inputs unchanged (work on a copy)"
                )


def _import_failure_text(module, what, outcome: sandbox.CallOutcome, hidden) -> str:
    """Why ``what`` did not run: the module's one import check failed."""
    if outcome.status == "timeout":
        reason = (
            f"importing {module}.py did not finish within {outcome.seconds:.0f} s (code that "
            "runs at import time, outside any function, must end quickly)"
        )
    elif outcome.status == "exception" and outcome.phase == "import":
        reason = _failure_text(module, what, outcome, 0.0, hidden)
    elif outcome.status == "crashed":
        crash = _failure_text(module, "", outcome, 0.0, hidden).lstrip(": ")
        reason = f"importing {module}.py: {crash}"
    else:
        reason = _failure_text(module, f"importing {module}.py", outcome, 0.0, hidden)
    return (
        f"{what} was not run: {reason}. The grader imports {module}.py once per grading; "
        "every test of it needs the import, so every test of it fails the same way."
    )


def _failure_text(module, what, outcome: sandbox.CallOutcome, limit, hidden) -> str:
    if outcome.status == "exception":
        where = f"importing {module}.py" if outcome.phase == "import" else what
        msg = "" if hidden else f": {outcome.exc_msg[:600]}"
        frames = "\n".join("  at " + f for f in outcome.frames[-4:])
        return f"{where} raised {outcome.exc_type}{msg}" + (f"\n{frames}" if frames else "")
    if outcome.status == "timeout":
        return f"{what} timed out after {limit:.0f} s (the wall-clock limit of this check)"
    if outcome.status == "crashed":
        code = outcome.exit_code
        if code is not None and code >= 0:
            return (
                f"{what}: the worker exited with code {code} before answering "
                "(sys.exit, os._exit or a crash in your code or at import)"
            )
        if code in (-9, -24):
            return f"{what}: the worker was killed (CPU, memory or process limit reached)"
        return f"{what}: the worker died from signal {-(code or 0)} before answering"
    if outcome.status == "unencodable":
        return f"{what} returned a value the grader cannot read: {outcome.exc_msg[:300]}"
    if outcome.status == "protocol":
        return f"{what}: the worker sent an invalid answer ({outcome.detail})"
    return f"{what}: the grader could not start a worker ({outcome.detail})"
