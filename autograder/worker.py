"""The untrusted side: a fork server (zygote) and the per-call worker it forks.

Process tree for one call (``P`` is the trusted pytest parent)::

    P --socket--> zygote (root or the grading user; torch, numpy and the grader's probes
                  pre-imported; holds no reference, no hidden test, no secret)
                    `-- supervisor  (fork; setsid; unshare(NEWPID|NEWNET|NEWNS) when root;
                        |            tmpfs over the grader's folders, a private /tmp)
                        `-- worker  (fork; PID 1 of the new PID namespace; own session;
                                     /proc remounted; drops to the unprivileged uid with
                                     setgroups([]); rlimits; clean environment; imports the
                                     student module and makes exactly one call)

The worker writes one framed message (``autograder.codec``) on an inherited pipe that goes
straight to ``P``; its stdout and stderr go to a second pipe that ``P`` reads and caps; the
supervisor tells ``P`` the worker's pid and, later, its exit status on a third pipe. ``P``
kills the worker with SIGKILL when the answer is in or the deadline passes; with a PID
namespace that kills every process the student started, double-forked daemons included.

Everything here before the student module is imported is trusted code; everything after
is not, so nothing in this file decides a grade.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib
import importlib.util
import json
import os
import random
import resource
import signal
import socket
import struct
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
O_PATH = 0o10000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

_libc = ctypes.CDLL(None, use_errno=True)
_LEN = struct.Struct("<Q")


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _under(path: str, roots) -> bool:
    """Is ``path`` one of ``roots`` or inside one? By whole path components: a sibling
    ``/x/course`` hidden must not hide ``/x/course-2026/.venv``."""
    path = path.rstrip(os.sep)
    return any(
        path == r.rstrip(os.sep) or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots
    )


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0)


# ------------------------------------------------------------------------------------ zygote
def zygote_main(sock_fd: int) -> None:
    """Serve fork requests on ``sock_fd`` until the parent closes it."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    sock = socket.socket(fileno=sock_fd)
    config = json.loads(_recv_exact(sock, _LEN.unpack(_recv_exact(sock, 8))[0]))
    files = _read_submission(config["submission_dir"], config["files"])
    for name in config.get("preimport", []):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional library is the student's problem later
            print(f"zygote: could not pre-import {name}: {exc!r}", file=sys.stderr)
    import numpy  # noqa: F401  (pre-imported: the point of the zygote)
    import torch

    from autograder import codec  # noqa: F401  (the worker cannot import it: it is hidden)

    torch.set_num_threads(1)
    secret_roots = [os.path.realpath(p) for p in config["hide"]]
    leaked = [
        m.__name__
        for m in list(sys.modules.values())
        if getattr(m, "__file__", None)
        and "probes" not in m.__name__
        and m.__name__.split(".")[0] != "autograder"
        and _under(os.path.realpath(m.__file__), secret_roots)
    ]
    if leaked:  # a probe or pre-import dragged reference code into the zygote
        sock.sendall(json.dumps({"error": f"secret modules imported: {leaked}"}).encode())
        return
    hidden = tuple(config["hide"])
    config["expose"] = sorted(
        {
            os.path.realpath(p)
            for p in sys.path
            if p and os.path.isdir(p) and not _under(os.path.realpath(p), hidden)
        }
    )
    config["outside"] = _outside_view(config["expose"])
    sock.sendall(b'{"ready": true}')
    while True:
        _reap()
        try:
            head, fds, _flags, _addr = socket.recv_fds(sock, 8, 3)
        except OSError:
            return
        if len(head) < 8:
            return
        request = _recv_exact(sock, _LEN.unpack(head)[0])
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                _supervise(config, files, request, *fds)
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("parent closed the zygote socket")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_submission(root: str, names: list[str]) -> dict[str, bytes]:
    out = {}
    for name in names:
        with open(os.path.join(root, name), "rb") as fh:
            out[name] = fh.read()
    return out


# -------------------------------------------------------------------------------- supervisor
def _supervise(config: dict, files: dict, request: bytes, result_w: int, out_w: int, st_w: int):
    """Runs as a trusted child of the zygote: set up namespaces, fork the worker, report."""
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    isolate = config["isolate"] == "full"
    if isolate:
        try:
            _check(_libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS), "unshare")
            _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
            uid, gid = config["uid"], config["gid"]
            handles = {p: os.open(p, O_PATH | os.O_DIRECTORY) for p in config["expose"]}
            blocked = _blocked_ancestors(config["expose"], uid, gid) if uid is not None else set()
            for path in config["outside"]:  # first: the scratch and re-binds go on top
                if os.path.isdir(path):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=000")
                elif os.path.isfile(path):
                    _mount("/dev/null", path, None, MS_BIND, None)
            scratch = (("/tmp", "512m"), ("/dev/shm", "64m"), ("/var/tmp", "64m"))
            for path, size in scratch:
                if os.path.isdir(path):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
            for path in sorted(blocked):
                if os.path.isdir(path) and not _under(path, [p for p, _ in scratch]):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
            _rebind(handles, uid, gid)
            for path in config["hide"]:  # last: also covers what the re-binds brought back
                if os.path.isdir(path):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=000")
        except OSError as exc:
            os.write(st_w, json.dumps({"error": f"sandbox setup failed: {exc}"}).encode() + b"\n")
            os._exit(71)
    pid = os.fork()
    if pid == 0:
        os.close(st_w)
        try:
            _worker(config, files, request, result_w, out_w, isolate)
        except BaseException:  # noqa: B036  (a grader-side setup failure: tell the parent)
            text = f"grader sandbox error: {traceback.format_exc()[-1500:]}".encode()
            for fd in (out_w, 2):
                try:
                    os.write(fd, text)
                    break
                except OSError:
                    continue
        finally:
            os._exit(72)
    os.close(result_w)
    os.close(out_w)
    os.write(st_w, json.dumps({"pid": pid}).encode() + b"\n")
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os.write(st_w, json.dumps({"exit": code}).encode() + b"\n")
    os._exit(0)


SYSTEM_ROOTS = frozenset(
    {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys"}
    | {"run", "var", "tmp"}
)


def _outside_view(expose: list[str]) -> list[str]:
    """Everything a worker has no reason to see: an allowlist view of the file system.

    Kept: the system folders (``/usr``, ``/lib``, ``/etc``, ...), the folders on ``expose``
    (the interpreter's and the course library's) and the folders on the way to them. Hidden:
    every other entry of ``/`` and of those on-the-way folders, such as another clone of the
    course with its solutions (a developer's clone beside the CI checkout being graded),
    home folders and mounted data. The named ``hide`` list then covers the secret parts of
    the checkout itself.
    """
    keep = {os.path.realpath(p) for p in expose}
    on_the_way = set()
    for path in keep:
        parent = os.path.dirname(path)
        while parent != "/":
            on_the_way.add(parent)
            parent = os.path.dirname(parent)
    out: list[str] = []

    def visit(folder: str) -> None:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return
        for name in names:
            path = os.path.join(folder, name)
            if path in keep or os.path.islink(path) or folder == "/" and name in SYSTEM_ROOTS:
                continue
            if path in on_the_way:
                visit(path)
            elif os.path.isdir(path) or os.path.isfile(path):
                out.append(path)

    visit("/")
    return out


def _can_enter(path: str, uid: int, gid: int, need: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid == gid:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def _blocked_ancestors(paths: list[str], uid: int, gid: int) -> set[str]:
    """First folder on the way to each path that the worker uid cannot enter."""
    out = set()
    for path in paths:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            need = 5 if i == len(parts) else 1  # r-x on the folder itself, --x on ancestors
            if not _can_enter(prefix, uid, gid, need):
                out.add(prefix)
                break
    return out


def _rebind(handles: dict[str, int], uid: int | None, gid: int | None) -> None:
    """Bind the interpreter's own folders back where a tmpfs now covers them.

    Python may live under a folder the worker uid cannot enter (``/root/.pyenv``) or under
    ``/tmp`` (a test tree), which the private tmpfs hides. The covering tmpfs is empty, so
    only the needed folders reappear, from handles opened before anything was covered.
    """
    for path, fd in handles.items():
        ok = os.path.isdir(path) and (uid is None or not _blocked_ancestors([path], uid, gid))
        if not ok:
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        os.close(fd)


# ------------------------------------------------------------------------------------ worker
def _worker(config: dict, files: dict, request: bytes, result_w: int, out_w: int, isolate: bool):
    os.setsid()
    from autograder import codec

    header, payload = codec.decode(request)
    limits = header["limits"]
    if isolate:
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        except OSError:
            pass  # the host's /proc stays; the uid change still protects other processes
    workdir = os.path.join(config["workdir_root"] if not isolate else "/tmp", "work")
    if not isolate:
        import tempfile

        workdir = tempfile.mkdtemp(prefix="ag-work-", dir=config["workdir_root"])
    subdir = os.path.join(workdir, "submission")
    os.makedirs(subdir, exist_ok=True)
    variant = header.get("variant")
    for name, data in files.items():
        if name.startswith("variants/") and not name.startswith(f"variants/{variant}/"):
            continue  # the catalogued mistakes' modules: only this call's one
        path = os.path.join(subdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    uid, gid = config["uid"], config["gid"]
    if os.geteuid() == 0 and uid is not None:
        for dirpath, dirnames, filenames in os.walk(workdir):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, uid, gid)
    os.chdir(workdir)
    # stdin from /dev/null, stdout+stderr into the capped pipe, nothing else inherited
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    keep = sorted({0, 1, 2, result_w})
    for lo, hi in zip([-1, *keep], [*keep, 65536]):
        if hi - lo > 1:
            os.closerange(lo + 1, hi)
    _set_limits(limits)
    if os.geteuid() == 0 and uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.environ.clear()
    os.environ.update(config["env"])
    os.environ["HOME"] = workdir
    os.environ["TMPDIR"] = workdir
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.path = [p for p in sys.path if not _under(p, config["hide"])] + [subdir]
    _run_call(header, payload, subdir, result_w)


def _set_limits(limits: dict) -> None:
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    # RLIMIT_AS on top of what the zygote already mapped (torch reserves a lot of address space)
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    cap = mapped + int(limits["memory"])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _run_call(header: dict, payload, subdir: str, result_w: int) -> None:
    from autograder import codec

    nonce = header["nonce"]
    args, kwargs = payload
    reply: dict = {"nonce": nonce}
    value = None
    recorder = _BannedRecorder(header.get("banned") or {})
    import numpy as np
    import torch

    torch.manual_seed(header["seed"])
    np.random.seed(header["seed"] % 2**32)
    random.seed(header["seed"])
    torch.set_num_threads(1)
    phase = "import"
    try:
        recorder.install()
        where = (
            subdir
            if not header.get("variant")
            else os.path.join(subdir, "variants", header["variant"])
        )
        module = _import_student(header["module"], where)
        recorder.wrap_student(module)
        phase = "call"
        with recorder.mode():
            if header["kind"] == "import":  # the grader's one import check per module
                value = None
            elif header["kind"] == "probe":
                mod_name, _, fn_name = header["target"].partition(":")
                probe = getattr(sys.modules[mod_name], fn_name)
                value = probe(module, *args, **kwargs)
            else:
                func = getattr(module, header["target"], None)
                if func is None:
                    raise AttributeError(
                        f"module {header['module']!r} has no function {header['target']!r}"
                    )
                value = func(*args, **kwargs)
        reply["status"] = "ok"
        if header.get("return_args"):
            reply_args = list(args)
        else:
            reply_args = None
    except BaseException as exc:  # noqa: B036  (student code may raise anything)
        reply.update(status="exception", phase=phase, **_describe(exc, subdir))
        value, reply_args = None, None
    reply["banned_used"] = sorted(recorder.violations)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: B036
        pass
    try:
        frame = codec.encode([value, reply_args], extra=reply)
    except BaseException as exc:  # noqa: B036
        reply.update(status="unencodable", exc_type=type(exc).__name__, exc_msg=str(exc)[:500])
        frame = codec.encode([None, None], extra=reply)
    view = memoryview(frame)
    while view:
        try:
            n = os.write(result_w, view)
        except InterruptedError:
            continue
        view = view[n:]
    os._exit(0)


def _import_student(module_name: str, subdir: str):
    path = os.path.join(subdir, module_name + ".py")
    if not os.path.exists(path):
        raise ModuleNotFoundError(f"the submission has no {module_name}.py")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _describe(exc: BaseException, subdir: str) -> dict:
    """Exception class, message and the student's own frames (file name and line only)."""
    try:
        msg = str(exc)
    except BaseException:  # noqa: B036  (a hostile __str__)
        msg = "<unprintable message>"
    frames = []
    try:
        for fs in traceback.extract_tb(exc.__traceback__):
            if fs.filename.startswith(subdir):
                rel = os.path.relpath(fs.filename, subdir)
                frames.append(f"{rel}, line {fs.lineno}, in {fs.name}: {(fs.line or '')[:120]}")
    except BaseException:  # noqa: B036
        pass
    return {"exc_type": type(exc).__name__[:80], "exc_msg": msg[:2000], "frames": frames[-8:]}


class _BannedRecorder:
    """Detection (not security) of banned API use while named student functions run.

    ``banned`` maps a student function (``fn`` or ``Class.method``) to dotted API names. Each
    API is replaced by a recording wrapper before the student module is imported, student
    functions are wrapped to keep a stack of which graded function is running, and a
    TorchFunctionMode catches calls that reach the same torch op by another name.
    """

    def __init__(self, banned: dict[str, list[str]]):
        self.banned = banned
        self.active: list[str] = []
        self.violations: set[tuple[str, str]] = set()
        self.by_leaf = {api.rsplit(".", 1)[-1]: api for apis in banned.values() for api in apis}

    def note(self, api: str) -> None:
        for fn in self.active:
            if api in self.banned.get(fn, ()):
                self.violations.add((fn, api))

    def install(self) -> None:
        for api in {a for apis in self.banned.values() for a in apis}:
            owner_name, _, attr = api.rpartition(".")
            owner = _resolve(owner_name)  # only what is loaded: importing costs seconds
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None:
                continue
            setattr(owner, attr, self._recording(api, original))

    def _recording(self, api: str, original):
        note = self.note
        if isinstance(original, type):

            class Recorded(original):  # type: ignore[misc, valid-type]
                def __init__(self, *a, **k):
                    note(api)
                    super().__init__(*a, **k)

            Recorded.__name__ = Recorded.__qualname__ = original.__name__
            return Recorded

        @functools.wraps(original)
        def recorded(*a, **k):
            note(api)
            return original(*a, **k)

        return recorded

    def wrap_student(self, module) -> None:
        for fn in self.banned:
            owner, _, attr = fn.rpartition(".")
            target = getattr(module, owner, None) if owner else module
            original = getattr(target, attr, None) if target is not None else None
            if callable(original):
                setattr(target, attr, self._tracking(fn, original))

    def _tracking(self, fn: str, original):
        active = self.active

        @functools.wraps(original)
        def tracked(*a, **k):
            active.append(fn)
            try:
                return original(*a, **k)
            finally:
                active.pop()

        return tracked

    def mode(self):
        import contextlib

        if not self.banned:
            return contextlib.nullcontext()
        from torch.overrides import TorchFunctionMode

        recorder = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", "")
                if name in recorder.by_leaf:
                    recorder.note(recorder.by_leaf[name])
                return func(*args, **(kwargs or {}))

        return _Mode()


def _resolve(dotted: str):
    """The object at ``dotted`` among already imported modules (never imports anything)."""
    parts = dotted.split(".")
    obj = sys.modules.get(parts[0])
    if obj is None:
        return None
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


if __name__ == "__main__":  # pragma: no cover - started by autograder.sandbox
    raise SystemExit(errno.EINVAL)
