"""Trusted parent side of the worker boundary: start the zygote, make calls, enforce limits.

One :class:`Sandbox` serves one grading session (one submission). Each :meth:`Sandbox.call`
forks a fresh worker from the zygote (see ``autograder.worker`` for the process tree), sends it
the call as codec data, reads at most one framed answer, captures and caps its output, and
SIGKILLs the worker (its whole PID namespace when root, its process group otherwise) when the
answer is in or the wall-clock deadline passes. Nothing the worker sends is executed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import codec

REPO_ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
_LEN = struct.Struct("<Q")
VARIANT_NAME = re.compile(r"^[A-Za-z0-9_]{1,80}$")
VARIANTS_DIR = "variants"  # submission folder of the catalogued mistakes' modules

# What a worker may use; the test's timeout bounds wall-clock time on top of these.
DEFAULT_LIMITS = {
    "memory": 2 * 1024**3,  # bytes of address space above what the zygote already mapped
    "fsize": 64 * 1024**2,  # largest file a worker may write
    "nproc": 256,  # processes + threads of the worker uid (RLIMIT_NPROC)
}
OUTPUT_CAP = 16 * 1024  # student stdout+stderr kept per call (the rest is counted, not kept)
OUTPUT_DRAIN_CAP = 256 * 1024**2  # after this much output we stop reading (the worker blocks)
RESULT_CAP = codec.MAX_BLOB_BYTES + codec.MAX_HEADER_BYTES

# Pre-imported once by the zygote instead of once per call. torch._dynamo is what an optimiser's
# first step imports (about 2 s on a CPU core: every smoke-train call would pay it).
PREIMPORT = [
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch._dynamo",
    "numpy",
    "safetensors.torch",
]

WORKER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "CUDA_VISIBLE_DEVICES": "",
    "MPLBACKEND": "Agg",
}


@dataclass
class CallOutcome:
    """Everything the parent learned from one call (all of it claims, except timing/exit)."""

    status: str  # ok | exception | timeout | crashed | protocol | unencodable | setup
    value: Any = None
    returned_args: list | None = None
    exc_type: str = ""
    exc_msg: str = ""
    frames: list[str] = field(default_factory=list)
    phase: str = ""
    output: str = ""
    output_bytes: int = 0
    exit_code: int | None = None
    banned_used: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""


def isolation_mode() -> str:
    """``full`` (root: namespaces + uid drop), else ``basic`` (process group + rlimits)."""
    forced = os.environ.get("AUTOGRADER_SANDBOX")
    if forced in ("full", "basic"):
        return forced
    return "full" if os.geteuid() == 0 else "basic"


def worker_ids() -> tuple[int | None, int | None]:
    """uid/gid for student code: ``AUTOGRADER_WORKER_USER`` (name or uid) or nobody (65534)."""
    if os.geteuid() != 0 or isolation_mode() != "full":
        return None, None  # without a mount namespace the interpreter may be unreadable
    spec = os.environ.get("AUTOGRADER_WORKER_USER", str(NOBODY))
    if spec.isdigit():
        return int(spec), int(spec)
    import pwd

    entry = pwd.getpwnam(spec)
    return entry.pw_uid, entry.pw_gid


class Sandbox:
    """A zygote bound to one staged submission; ``call`` runs one student call in a worker."""

    def __init__(
        self,
        submission_dir: Path,
        files: list[str],
        hide: list[Path],
        *,
        preimport: list[str] | None = None,
        limits: dict | None = None,
        python: str | None = None,
    ):
        self.submission_dir = Path(submission_dir)
        self.files = list(files)
        self.hide = [str(Path(p).resolve()) for p in hide]
        self.preimport = list(preimport or PREIMPORT)
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.python = python or sys.executable
        self.isolate = isolation_mode()
        self.uid, self.gid = worker_ids()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self.startup_seconds = 0.0
        self.workdir_root = None
        if self.isolate != "full":
            import tempfile

            self.workdir_root = tempfile.mkdtemp(prefix="autograder-workers-")

    # ------------------------------------------------------------------------------ zygote
    def _start(self) -> None:
        start = time.monotonic()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        boot = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from autograder.worker import zygote_main; zygote_main(int(sys.argv[2]))"
        )
        self._proc = subprocess.Popen(
            [self.python, "-I", "-B", "-c", boot, str(REPO_ROOT), str(child_sock.fileno())],
            pass_fds=(child_sock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(WORKER_ENV),
            cwd="/",
            start_new_session=True,
        )
        child_sock.close()
        self._sock = parent_sock
        config = {
            "submission_dir": str(self.submission_dir),
            "files": self.files,
            "hide": self.hide,
            "isolate": self.isolate,
            "uid": self.uid,
            "gid": self.gid,
            "env": WORKER_ENV,
            "preimport": self.preimport,
            "workdir_root": self.workdir_root,
        }
        raw = json.dumps(config).encode()
        parent_sock.sendall(_LEN.pack(len(raw)) + raw)
        parent_sock.settimeout(120)
        try:
            answer = json.loads(parent_sock.recv(4096) or b"{}")
        except (OSError, ValueError) as exc:
            answer = {"error": f"no answer from the zygote ({exc})"}
        parent_sock.settimeout(None)
        if not answer.get("ready"):
            self.close()
            raise RuntimeError(f"the grader's worker pool did not start: {answer}")
        self.startup_seconds = time.monotonic() - start

    def close(self) -> None:
        """Stop the zygote (its workers are already dead: each call kills its own)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc = None
        if self.workdir_root:
            import shutil

            shutil.rmtree(self.workdir_root, ignore_errors=True)

    # -------------------------------------------------------------------------------- call
    def call(
        self,
        module: str,
        target: str,
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        kind: str = "call",
        timeout: float = 30.0,
        seed: int = 0,
        banned: dict | None = None,
        return_args: bool = False,
        variant: str | None = None,
    ) -> CallOutcome:
        """Run ``module.target(*args, **kwargs)`` (or a probe) in a fresh worker.

        ``variant``: import ``module`` from ``variants/<variant>/`` of the submission instead
        (the grader's runs of catalogued mistakes, ``autograder.mistakes``).
        """
        if variant is not None and not VARIANT_NAME.match(variant):
            raise ValueError(f"grader bug: variant folder {variant!r}")
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        nonce = secrets.token_hex(16)
        limits = {**self.limits, "cpu_s": max(1, int(timeout) + 1)}
        try:
            request = codec.encode(
                [list(args), dict(kwargs or {})],
                extra={
                    "nonce": nonce,
                    "kind": kind,
                    "module": module,
                    "target": target,
                    "seed": int(seed),
                    "banned": banned or {},
                    "limits": limits,
                    "return_args": return_args,
                    "variant": variant,
                },
            )
        except codec.CodecError as exc:
            raise TypeError(f"grader bug: argument cannot be sent to a worker: {exc}") from None
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        st_r, st_w = os.pipe()
        start = time.monotonic()
        try:
            socket.send_fds(self._sock, [_LEN.pack(len(request))], [result_w, out_w, st_w])
            self._sock.sendall(request)
        except OSError as exc:
            for fd in (result_r, result_w, out_r, out_w, st_r, st_w):
                os.close(fd)
            self.close()
            return CallOutcome(status="setup", detail=f"worker pool failed: {exc}")
        for fd in (result_w, out_w, st_w):
            os.close(fd)
        try:
            outcome = self._collect(result_r, out_r, st_r, nonce, start + timeout)
        finally:
            for fd in (result_r, out_r, st_r):
                os.close(fd)
        outcome.seconds = time.monotonic() - start
        return outcome

    def _collect(self, result_r: int, out_r: int, st_r: int, nonce: str, deadline: float):
        sel = selectors.DefaultSelector()
        for fd in (result_r, out_r, st_r):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        result, output, status_buf = bytearray(), bytearray(), bytearray()
        output_total, worker_pid, exit_code = 0, None, None
        need, timed_out, error = None, False, ""
        open_fds = {result_r, out_r, st_r}
        while open_fds:
            # answer complete and the worker gone (or answered): stop listening
            if need is not None and len(result) >= need:
                break
            if exit_code is not None and result_r not in open_fds:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if exit_code is not None:
                remaining = min(remaining, 0.5)  # daemons may hold the pipes open
            events = sel.select(remaining)
            if not events and exit_code is not None:
                break
            for key, _ in events:
                fd = key.fd
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                    continue
                if fd == result_r:
                    result += chunk
                    if need is None and len(result) >= codec.PREFIX_SIZE:
                        try:
                            need = codec.frame_length(bytes(result[: codec.PREFIX_SIZE]))
                        except codec.CodecError as exc:
                            error = f"malformed answer: {exc}"
                            need = -1
                    if need == -1 or len(result) > RESULT_CAP:
                        error = error or "answer larger than the cap"
                        sel.unregister(fd)
                        open_fds.discard(fd)
                elif fd == out_r:
                    output_total += len(chunk)
                    if len(output) < OUTPUT_CAP:
                        output += chunk[: OUTPUT_CAP - len(output)]
                    if output_total > OUTPUT_DRAIN_CAP:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                else:
                    status_buf += chunk[:4096]
                    worker_pid, exit_code, err = _parse_status(status_buf, worker_pid, exit_code)
                    error = error or err
        sel.close()
        self._kill(worker_pid)
        if exit_code is None:
            exit_code = self._await_exit(st_r, status_buf)
        text = output.decode("utf-8", errors="replace")
        base = {"output": text, "output_bytes": output_total, "exit_code": exit_code}
        if timed_out and not (need and need > 0 and len(result) >= need):
            return CallOutcome(status="timeout", **base)
        if error and not (need and need > 0 and len(result) >= need):
            return CallOutcome(status="protocol", detail=error, **base)
        if not need or need < 0 or len(result) < need:
            return CallOutcome(status="crashed", **base)
        try:
            header, value = codec.decode(bytes(result[:need]))
        except codec.CodecError as exc:
            return CallOutcome(status="protocol", detail=f"malformed answer: {exc}", **base)
        if header.get("nonce") != nonce:
            return CallOutcome(status="protocol", detail="answer for another call", **base)
        if type(value) is not list or len(value) != 2:
            return CallOutcome(status="protocol", detail="malformed answer body", **base)
        status = header.get("status")
        if status not in ("ok", "exception", "unencodable"):
            return CallOutcome(status="protocol", detail="unknown answer status", **base)
        banned_used = [
            (str(p[0])[:100], str(p[1])[:200])
            for p in header.get("banned_used", [])[:50]
            if type(p) is list and len(p) == 2
        ]
        return CallOutcome(
            status=status,
            value=value[0],
            returned_args=value[1] if type(value[1]) is list else None,
            exc_type=str(header.get("exc_type", ""))[:80],
            exc_msg=str(header.get("exc_msg", ""))[:2000],
            frames=[str(f)[:300] for f in header.get("frames", [])[:8]]
            if type(header.get("frames")) is list
            else [],
            phase=str(header.get("phase", ""))[:10],
            banned_used=banned_used,
            **base,
        )

    def _kill(self, worker_pid: int | None) -> None:
        if worker_pid is None:
            return
        for kill in (os.kill, os.killpg):  # PID 1 of its namespace, and its process group
            try:
                kill(worker_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _await_exit(self, st_r: int, buf: bytearray, wait: float = 2.0) -> int | None:
        end = time.monotonic() + wait
        pid, code = None, None
        while time.monotonic() < end:
            try:
                chunk = os.read(st_r, 4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                break
            buf += chunk[:4096]
            pid, code, _ = _parse_status(buf, pid, code)
            if code is not None:
                return code
        return code


def _parse_status(buf: bytearray, pid, code):
    error = ""
    for line in bytes(buf).splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if type(msg) is not dict:
            continue
        if type(msg.get("pid")) is int:
            pid = msg["pid"]
        if type(msg.get("exit")) is int:
            code = msg["exit"]
        if type(msg.get("error")) is str:
            error = msg["error"][:300]
    return pid, code, error
