"""End to end on the fixture assignment: reference full marks, starter zero, check, zip."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "grader_assignment"
ENV = {
    **os.environ,
    "AUTOGRADER_TESTS_ROOT": str(FIXTURE / "tests"),
    "AUTOGRADER_SOLUTIONS_ROOT": str(FIXTURE / "solutions"),
    "OMP_NUM_THREADS": "2",
}
FULL_MARKS = 14.0


def env_with_tmp(tmp_path: Path) -> dict:
    """ENV with temporary files under ``tmp_path``: a grader killed with SIGKILL cannot remove
    its staging folder, and the test should not leave it in the machine's /tmp."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return {**ENV, "TMPDIR": str(scratch)}


def make_reference_submission(folder: Path) -> Path:
    """The fixture reference plus the classifier artefact it trains (parent-side, trusted)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "solutions" / "grader_fixture.py", folder)
    sys.path.insert(0, str(FIXTURE / "solutions"))
    try:
        import grader_fixture as ref
    finally:
        sys.path.pop(0)
    x, y = ref.make_blobs(500, seed=1)  # [N, D], [N]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        ref.softmax_regression_loss(model(x), y).backward()
        opt.step()
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()},
        str(folder / "classifier.safetensors"),
    )
    return folder


def grade(submission: Path, results: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submission),
            "--results",
            str(results),
            *extra,
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(results.read_text())


def test_reference_gets_full_marks_and_starter_zero(tmp_path):
    ref = grade(make_reference_submission(tmp_path / "ref"), tmp_path / "ref.json")
    assert ref["score"] == ref["max_score"] == FULL_MARKS
    assert all(t["status"] == "passed" for t in ref["tests"])
    starter = tmp_path / "starter"
    starter.mkdir()
    shutil.copy(FIXTURE / "starter" / "grader_fixture.py", starter)
    zero = grade(starter, tmp_path / "starter.json")
    assert zero["score"] == 0 and len(zero["tests"]) == len(ref["tests"])
    for test in zero["tests"]:
        assert (
            test["output"]
            and "NotImplementedError" in test["output"]
            or "safetensors" in test["output"]
        )
    hidden = [t for t in zero["tests"] if t["visibility"] != "visible"]
    assert hidden and all("seed" in t["extra_data"] for t in hidden)
    # hidden tests name the exception class and the student's own line, never the message
    assert all("raised NotImplementedError:" not in t["output"] for t in hidden)
    assert (os.stat(tmp_path / "ref.json").st_mode & 0o077) == 0


def test_zip_submission_and_check_command(tmp_path):
    sub = make_reference_submission(tmp_path / "wrapped" / "my_submission")
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sub.iterdir():
            zf.write(f, f"my_submission/{f.name}")
    assert grade(archive, tmp_path / "zip.json")["score"] == FULL_MARKS
    starter = tmp_path / "starter_code"
    starter.mkdir()
    shutil.copy(FIXTURE / "starter" / "grader_fixture.py", starter)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "check",
            "grader_fixture",
            "--submission",
            str(starter),
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0
    assert "Total: 0 / 5" in proc.stdout and "(hidden)" not in proc.stdout
    assert "raised NotImplementedError: write this function" in proc.stdout


def test_gradescope_zip_runs_in_a_stand_in_tree(tmp_path):
    out = tmp_path / "autograder.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "instructor.gradescope", "--out", str(out)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        zf.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "solutions/grader_fixture.py"} <= set(names)
    assert any(n.startswith("autograder/tests/grader_fixture/test_hidden_") for n in names)
    make_reference_submission(root / "submission")
    env = {k: v for k, v in ENV.items() if not k.startswith("AUTOGRADER_")}
    env.update(AUTOGRADER_GRADESCOPE_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == FULL_MARKS


def test_workers_see_neither_the_grader_nor_the_instructor_tooling(tmp_path):
    from autograder import GRADER_DIR, REPO_ROOT, runner

    hidden = runner._hide_list(tmp_path / "results.json")
    assert str(GRADER_DIR) in hidden and str((REPO_ROOT / "instructor").resolve()) in hidden
    assert str((REPO_ROOT / "replearn").resolve()) not in hidden  # student modules import it


def test_killed_grader_leaves_valid_results(tmp_path):
    """SIGKILL the grader part-way: results.json is still valid JSON with every test at 0."""
    import signal
    import time

    results = tmp_path / "r.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(REPO / "tests" / "attacks" / "infinite_swallow"),
            "--results",
            str(results),
        ],
        cwd=REPO,
        env=env_with_tmp(tmp_path),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and json.loads(results.read_text())["tests"]:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    data = json.loads(results.read_text())
    assert data["score"] <= 9 and len(data["tests"]) == 11


@pytest.mark.slow
def test_reference_ten_times_identical(tmp_path):
    """Ten regrades, two at a time (as a batch with --jobs 2 would run them), each with its own
    random hidden-test seed: the same full marks every time."""
    sub = make_reference_submission(tmp_path / "ref")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda i: grade(sub, tmp_path / f"r{i}.json"), range(10)))
    assert [run["score"] for run in runs] == [FULL_MARKS] * 10
    assert [[t["score"] for t in run["tests"]] for run in runs] == [
        [t["score"] for t in runs[0]["tests"]]
    ] * 10


def test_grade_picks_the_assignments_a_submission_holds(tmp_path):
    from autograder.cli import submitted_assignments
    from replearn.contract import assignments

    everything = assignments.resolve("all")
    one = everything[0]
    archive = tmp_path / "one.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"work/{one.module}.py", "x = 1\n")
        zf.writestr("notes.txt", "hello\n")
    assert submitted_assignments(archive) == [one]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / f"{everything[-1].module}.py").write_text("x = 1\n")
    assert submitted_assignments(folder) == [everything[-1]]
    assert submitted_assignments(tmp_path / "empty-or-missing") == everything


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` now (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _kill_and_watch(command: list[str], depth: int, tmp_path: Path) -> list[int]:
    """Start ``command``, wait until ``depth`` levels of processes run under it, SIGKILL it
    alone (as a CI's or a batch runner's timeout does), and return what still runs after 10 s."""
    import signal
    import time

    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env_with_tmp(tmp_path),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        tree: list[int] = []
        while time.monotonic() < deadline:
            tree = _descendants(proc.pid)
            if len(tree) >= depth:
                break
            time.sleep(0.2)
        assert len(tree) >= depth, f"only {len(tree)} processes under the grader"
        time.sleep(1.0)
        tree = _descendants(proc.pid)  # the workers of the test now running, too
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _running(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        return _running(tree)
    finally:
        for pid in _running(_descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)


def test_a_grader_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    """grade -> pytest (its own session) -> worker zygote -> workers: all die with grade."""
    submission = REPO / "tests" / "attacks" / "infinite_swallow"
    command = ["grade", str(submission), "--results", str(tmp_path / "r.json")]
    left = _kill_and_watch([sys.executable, "-m", "autograder", *command], 3, tmp_path)
    assert left == []


def test_a_batch_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    """batch -> grade -> pytest -> zygote -> workers: all die with the batch."""
    folder = tmp_path / "submissions"
    shutil.copytree(REPO / "tests" / "attacks" / "infinite_swallow", folder / "alice")
    command = ["batch", str(folder), "--out", str(tmp_path / "g.csv")]
    left = _kill_and_watch([sys.executable, "-m", "autograder", *command], 4, tmp_path)
    assert left == []
