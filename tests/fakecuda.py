"""A fake CUDA device for CPU-only machines: code written for ``cuda`` runs under CUDA's device rules.

The course's main road is a Colab GPU, and CI has none. Installed, this harness makes
``torch.cuda.is_available()`` say True and lets ``"cuda"`` tensors exist on the CPU, while every
mistake that only a GPU would reveal still fails loudly, with CUDA's own message:

* an op that mixes a CUDA tensor with a CPU tensor of one or more dimensions raises
  ``Expected all tensors to be on the same device`` (a 0-dim CPU tensor is a scalar, which CUDA
  accepts; so are CPU index tensors in ``cuda[idx]`` and copies between devices);
* a random draw on a CUDA tensor with a CPU ``torch.Generator`` (or on a CPU tensor with a CUDA
  one) raises ``Expected a 'cuda' device type for generator but found 'cpu'``;
* ``.numpy()`` (hence ``np.asarray``, matplotlib) of a CUDA tensor raises the TypeError a GPU gives.

How: a CUDA tensor is a wrapper subclass (``FakeCudaTensor``) whose Python ``.device`` says
``cuda:0``, whose numbers live in an ordinary CPU tensor inside (``.elem``), and whose C++ device is
``meta``, so that no CUDA runtime call is ever made (the autograd engine, device guards and
allocators see a device that needs none). Every aten op reaching a wrapper goes through
``__torch_dispatch__``, which checks the devices as the CUDA backend would, runs the op on the
inner CPU tensors and wraps the results. A dispatch mode catches factory calls with
``device="cuda"`` (``torch.zeros(..., device=x.device)``, ``.to("cuda")``); a function mode checks
generators, which the dispatcher no longer shows as Python objects. ``torch.Generator("cuda")``
gives a CPU generator that says it is on ``cuda:0``.

Usage::

    from tests import fakecuda                    # or `import fakecuda` inside tests/
    with fakecuda.installed():                    # or fakecuda.install() ... fakecuda.uninstall()
        model = Net().to("cuda")                  # runs on the CPU, reports cuda:0
        model(torch.rand(2, 3))                   # raises: CPU input, CUDA weights

    python -m tests.fakecuda run assignments/05_masked_autoencoders.ipynb [--preset smoke]
    python -m tests.fakecuda module benchmarks.colab_throughput --device cuda --budget-s 1

Not emulated (documented limits, not hidden paths): ``torch.autocast("cuda")`` runs without
autocasting (the CPU kernels are float32), streams, events and memory statistics are stubs,
``torch.save`` of a CUDA tensor stores a CPU tensor (so ``torch.load`` without ``map_location``
returns CPU tensors where a GPU would return CUDA ones), and random draws on the fake device use
CPU random streams (so numbers differ from a real GPU's, as they would anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)  # what Python code sees
INNER = torch.device("meta")  # what C++ sees: a device that needs no runtime
THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parent.parent

# Where CUDA accepts CPU tensors beside CUDA ones: copies between devices, CPU indices into a
# CUDA tensor, and the ops that only look at metadata or read one number.
_CROSS_DEVICE_OK = {
    aten._to_copy.default,
    aten.copy_.default,
    aten.copy.default,
    aten.lift_fresh.default,
    aten.lift_fresh_copy.default,
    aten.detach.default,
    aten.alias.default,
    aten._local_scalar_dense.default,
    aten.set_.source_Tensor,
}
_INDEX_READ = {aten.index.Tensor, aten._unsafe_index.Tensor}
_INDEX_WRITE = {aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class FakeCudaError(RuntimeError):
    """A CUDA device rule was broken (CUDA itself raises a RuntimeError)."""


class _State:
    installed = False
    strict = True  # False: record violations and go on (finds several bugs in one run)
    violations: list[str] = []
    saved: dict[tuple[object, str], object] = {}
    modes: list[object] = []
    real_meta = 0  # > 0 while Python code asked for the meta device itself (see _FactoryMode)


def _where() -> str:
    """The innermost frame of the code under test (not torch, not this file)."""
    torch_dir = str(Path(torch.__file__).parent)
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename != str(THIS_FILE) and not frame.filename.startswith(torch_dir):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
    return "?"


def _violation(message: str) -> None:
    where = _where()
    _State.violations.append(f"{message}\n    at {where}")
    if _State.strict:
        raise FakeCudaError(f"{message} [fakecuda; at {where}]")


# ---- the tensor ---------------------------------------------------------------------------------
class FakeCudaTensor(torch.Tensor):
    """A tensor that says it lives on ``cuda:0``; its numbers are the CPU tensor ``elem``."""

    elem: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl  # no re-wrapping at this level

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        if isinstance(elem, FakeCudaTensor) or elem.device.type != "cpu":
            raise TypeError(
                f"FakeCudaTensor wraps a CPU tensor, got {type(elem).__name__} on {elem.device}"
            )
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.size(),
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            layout=elem.layout,
            device=INNER,
            requires_grad=elem.requires_grad,
        )
        out.elem = elem
        return out

    # What Python code sees. is_meta stays False: torch.nn.init skips meta tensors, which would
    # hide exactly the generator mistakes this harness is for.
    device = property(lambda self: CUDA)
    is_cuda = property(lambda self: True)
    is_cpu = property(lambda self: False)
    is_meta = property(lambda self: False)

    def get_device(self) -> int:
        return 0

    def untyped_storage(self):  # distinct, real storages: safetensors checks sharing with them
        return self.elem.untyped_storage()

    def data_ptr(self) -> int:
        return self.elem.data_ptr()

    def __repr__(self, *, tensor_contents=None) -> str:
        return repr(self.elem)[:-1] + ", device='cuda:0')"

    def __deepcopy__(self, memo):  # copy.deepcopy(model): a new CUDA tensor, parameters stay so
        if id(self) in memo:
            return memo[id(self)]
        new = FakeCudaTensor(self.elem.detach().clone())
        new.requires_grad_(self.requires_grad)
        for key, value in self.__dict__.items():
            if key != "elem":
                setattr(new, key, copy.deepcopy(value, memo))
        memo[id(self)] = new
        return new

    def __reduce_ex__(self, protocol):  # pickled (torch.save) as the CPU tensor it holds
        return self.elem.detach().__reduce_ex__(protocol)

    def __tensor_flatten__(self):
        return ["elem"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return FakeCudaTensor(inner["elem"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def is_fake(t) -> bool:
    """Whether ``t`` is a tensor on the fake CUDA device."""
    return isinstance(t, FakeCudaTensor)


def _unwrap(x):
    return x.elem if isinstance(x, FakeCudaTensor) else x


def _wrap(x):
    if isinstance(x, torch.Tensor) and not isinstance(x, FakeCudaTensor) and x.device.type == "cpu":
        return FakeCudaTensor(x)
    return x


def _to_accelerator(device) -> bool:
    """Whether Python code asks for the (fake) CUDA device."""
    return device is not None and torch.device(device).type == "cuda"


def _on_inner(device) -> bool:
    """CUDA, or the wrappers' C++ device (what C++ passes on for an op on a CUDA tensor)."""
    return device is not None and torch.device(device).type in ("cuda", "meta")


@contextlib.contextmanager
def _real_meta():
    """Python code asked for the meta device (model skeletons, ``init_empty_weights``): its
    tensors stay real meta tensors, not CUDA ones."""
    _State.real_meta += 1
    try:
        yield
    finally:
        _State.real_meta -= 1


def _check_devices(func, args, kwargs) -> None:
    """CUDA's rule: every tensor operand on the op's device, except CPU scalars (0-dim)."""
    if func in _CROSS_DEVICE_OK:
        return
    name = func.__name__
    if func in _INDEX_READ or func in _INDEX_WRITE:
        self, indices = args[0], args[1]
        index_tensors = [t for t in tree_flatten(indices)[0] if isinstance(t, torch.Tensor)]
        if not is_fake(self) and self.dim() > 0 and any(is_fake(t) for t in index_tensors):
            _violation(
                f"{name}: indices should be either on cpu or on the same device as the "
                "indexed tensor (cpu)"
            )
        if func in _INDEX_WRITE:
            values = args[2] if len(args) > 2 else kwargs.get("values")
            if (
                isinstance(values, torch.Tensor)
                and is_fake(self) != is_fake(values)
                and values.dim() > 0
            ):
                _violation(
                    f"{name}: Expected all tensors to be on the same device, but found at "
                    f"least two devices, cuda:0 and cpu! (values {tuple(values.shape)})"
                )
        return
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    if not any(is_fake(t) for t in tensors):
        return
    cpu = [tuple(t.shape) for t in tensors if not is_fake(t) and t.dim() > 0]
    if cpu:
        _violation(
            f"{name}: Expected all tensors to be on the same device, but found at least "
            f"two devices, cuda:0 and cpu! (CPU operands of shape {cpu})"
        )


def _run(func, args, kwargs):
    """Run one aten op the way the CUDA backend would, on the CPU tensors inside."""
    _check_devices(func, args, kwargs)
    any_fake = any(is_fake(t) for t in tree_flatten((args, kwargs))[0])
    target = kwargs.get("device")
    if func is aten._to_copy.default:
        to_cuda = _on_inner(target) if target is not None else is_fake(args[0])
        kwargs = {k: v for k, v in kwargs.items() if k not in ("non_blocking", "pin_memory")}
        if target is not None:
            kwargs["device"] = CPU
        out = func(_unwrap(args[0]), *args[1:], **kwargs)
        return FakeCudaTensor(out) if to_cuda else out
    to_cuda = _on_inner(target)
    if to_cuda:
        kwargs = dict(kwargs, device=CPU)
    kwargs.pop("pin_memory", None)
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func is aten._local_scalar_dense.default or not (any_fake or to_cuda):
        return out
    wrapped = tree_map(_wrap, out)
    if any_fake:
        try:  # in-place ops return their input object; views alias their base
            return return_and_correct_aliasing(func, args, kwargs, wrapped)
        except Exception:  # the helper is strict about schemas it does not know
            return wrapped
    return wrapped


class _FactoryMode(TorchDispatchMode):
    """Ops without a CUDA operand that create one: ``device="cuda"``, ``cpu_tensor.to("cuda")``,
    and the tensors C++ makes for an op on a CUDA tensor, which ask for the wrappers' C++ device
    (meta; a gradient flowing back to a CUDA tensor, ``new_zeros``). A meta tensor that Python
    code asked for itself (``_real_meta``) or an op on real meta tensors stays meta."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if any(is_fake(t) for t in tensors):
            return _run(func, args, kwargs)
        device = kwargs.get("device")
        if _to_accelerator(device):
            return _run(func, args, kwargs)
        if (
            device is not None
            and torch.device(device).type == "meta"
            and not _State.real_meta
            and not any(t.is_meta for t in tensors)
        ):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


# ---- generators ---------------------------------------------------------------------------------
_RealGenerator = torch.Generator


class FakeCudaGenerator(_RealGenerator):
    """``torch.Generator(device="cuda")``: CPU random streams, reporting ``cuda:0``."""

    device = property(lambda self: CUDA)


class _GeneratorMeta(type(_RealGenerator)):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _RealGenerator)

    def __subclasscheck__(cls, sub) -> bool:
        return issubclass(sub, _RealGenerator)


class _Generator(_RealGenerator, metaclass=_GeneratorMeta):
    """Stands in for ``torch.Generator`` while installed; real CPU generators still pass
    ``isinstance(g, torch.Generator)``."""

    def __new__(cls, device="cpu"):
        if _to_accelerator(device):
            return FakeCudaGenerator()
        return _RealGenerator(device=device)


def _generator_device(gen) -> torch.device:
    return CUDA if isinstance(gen, FakeCudaGenerator) else gen.device


# Tensors made from Python data. Not patched (torch.device("meta") and transformers recognise
# these very functions), but intercepted by the function mode below.
_FROM_DATA = (torch.tensor, torch.as_tensor, torch.asarray)


class _GeneratorRule(torch.overrides.TorchFunctionMode):
    """A random draw uses a generator of the draw's device (CUDA's check). Made at the Python
    level, where the generator object is still the one the caller passed (the dispatcher hands
    out a fresh ``torch._C.Generator``), on the outermost torch call: the one the caller wrote,
    with the tensor the draw serves (``nn.init.uniform_(w, generator=g)``, ``w.bernoulli_(...)``,
    ``torch.rand(..., device=d, generator=g)``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        gen = kwargs.get("generator")
        if isinstance(gen, _RealGenerator):
            device = kwargs.get("device")
            if device is None:
                operands = tree_flatten((args, kwargs))[0]  # nn.init takes tensor= by keyword
                first = next((a for a in operands if isinstance(a, torch.Tensor)), None)
                device = first.device if first is not None else CPU
            draw = "cuda" if _to_accelerator(device) else "cpu"
            have = _generator_device(gen).type
            if draw != have:
                name = getattr(func, "__name__", str(func))
                _violation(
                    f"{name}: Expected a '{draw}' device type for generator but found '{have}'"
                )
        device = kwargs.get("device")
        if func in _FROM_DATA and _to_accelerator(device):
            # the binding sets a CUDA device guard: build on the CPU, then move (as CUDA does)
            requires_grad = kwargs.pop("requires_grad", False)
            kwargs.pop("pin_memory", None)
            kwargs["device"] = CPU
            out = _to(func(*tree_map(_unwrap, args), **kwargs), "cuda")
            return out.requires_grad_() if requires_grad else out
        if isinstance(device, (str, torch.device)) and torch.device(device).type == "meta":
            with _real_meta():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


# ---- methods that would call the CUDA runtime or hand out host memory ---------------------------
_real_to = torch.Tensor.to
_real_numpy = torch.Tensor.numpy


def _parse_to(args, kwargs):
    """``Tensor.to``'s overloads: (device, dtype), (dtype), (tensor), keyword forms."""
    device = dtype = None
    for a in args:
        if isinstance(a, (str, torch.device)):
            device = torch.device(a)
        elif isinstance(a, int) and not isinstance(a, bool):
            device = torch.device("cuda", a)
        elif isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, torch.Tensor):
            device, dtype = a.device, a.dtype
    if kwargs.get("device") is not None:
        device = torch.device(kwargs["device"])
    if kwargs.get("dtype") is not None:
        dtype = kwargs["dtype"]
    return device, dtype


def _to(self, *args, **kwargs):
    """``Tensor.to`` without the binding's CUDA runtime calls: moves that involve the fake device
    go through ``aten._to_copy`` (differentiable, as the real move is)."""
    device, dtype = _parse_to(args, kwargs)
    if device is not None and device.type == "meta":
        with _real_meta():
            return _real_to(self, *args, **kwargs)
    if not is_fake(self) and not _to_accelerator(device):
        return _real_to(self, *args, **kwargs)
    to_cuda = _to_accelerator(device) if device is not None else is_fake(self)
    dtype = dtype or self.dtype
    if to_cuda == is_fake(self) and dtype == self.dtype and not kwargs.get("copy", False):
        return self
    extra = {"memory_format": kwargs["memory_format"]} if kwargs.get("memory_format") else {}
    return aten._to_copy.default(self, dtype=dtype, device=CUDA if to_cuda else CPU, **extra)


def _cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
    return _to(self, "cuda")


def _cpu(self, memory_format=torch.preserve_format):
    return _to(self, "cpu") if is_fake(self) else self


def _numpy(self, *, force: bool = False):
    if is_fake(self):
        raise TypeError(
            "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
            "tensor to host memory first."
        )
    return _real_numpy(self, force=force)


_real_tolist = torch.Tensor.tolist


def _tolist(self):
    return _real_tolist(self.elem if is_fake(self) else self)  # CUDA copies to the host for it


def _pin_memory(self, device=None):
    return self  # pinned host memory is a CUDA allocation; the CPU copy is already host memory


def _is_pinned(self, device=None) -> bool:
    return False


_RealAutocast = torch.autocast


class _Autocast(_RealAutocast):
    """``torch.autocast("cuda", ...)`` runs without autocasting (the fake device has no half
    kernels); every other device type is left to torch."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if device_type == "cuda":
            device_type, dtype, enabled = "cpu", None, False
        super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class _Properties:
    name = "Tesla T4 (fakecuda)"
    major, minor = 7, 5
    total_memory = 15 * 2**30
    multi_processor_count = 40


def _patches() -> list[tuple[object, str, object]]:
    """(owner, attribute, replacement): a T4-like GPU (capability 7.5: float16 AMP, no bf16)."""
    cuda = torch.cuda

    def zero(*args, **kwargs) -> int:
        return 0

    def none(*args, **kwargs) -> None:
        return None

    patches = [
        (cuda, "is_available", lambda: True),
        (cuda, "device_count", lambda: 1),
        (cuda, "is_initialized", lambda: True),
        (cuda, "_lazy_init", none),
        (cuda, "init", none),
        (cuda, "current_device", zero),
        (cuda, "set_device", none),
        (cuda, "get_device_capability", lambda device=None: (7, 5)),
        (cuda, "get_device_name", lambda device=None: _Properties.name),
        (cuda, "get_device_properties", lambda device=None: _Properties()),
        (cuda, "is_bf16_supported", lambda *a, **k: False),
        (cuda, "synchronize", none),
        (cuda, "empty_cache", none),
        (cuda, "manual_seed", none),
        (cuda, "manual_seed_all", none),
        (cuda, "seed_all", none),
        (cuda, "get_rng_state_all", lambda: [torch.get_rng_state()]),
        (cuda, "set_rng_state_all", none),
        (cuda, "max_memory_allocated", zero),
        (cuda, "memory_allocated", zero),
        (cuda, "reset_peak_memory_stats", none),
        (cuda, "is_current_stream_capturing", lambda: False),
        # Adam asks the accelerator's current stream whether a CUDA graph is being captured
        (torch.optim.Optimizer, "_accelerator_graph_capture_health_check", none),
        (torch, "Generator", _Generator),
        (torch, "autocast", _Autocast),
        (torch.Tensor, "to", _to),
        (torch.Tensor, "cuda", _cuda),
        (torch.Tensor, "cpu", _cpu),
        (torch.Tensor, "numpy", _numpy),
        (torch.Tensor, "tolist", _tolist),
        (torch.Tensor, "pin_memory", _pin_memory),
        (torch.Tensor, "is_pinned", _is_pinned),
    ]
    return [(owner, name, new) for owner, name, new in patches if hasattr(owner, name)]


def install(*, strict: bool = True) -> None:
    """Pretend one CUDA GPU is present. ``strict=False`` records violations instead of raising
    (see :func:`violations`), to find several bugs in one run."""
    if _State.installed:
        return
    # torch._dynamo (imported by an optimizer's first step) indexes torch's functions when first
    # imported: let it see the real ones.
    import torch._dynamo  # noqa: F401

    _State.strict = strict
    for owner, name, new in _patches():
        _State.saved[(owner, name)] = getattr(owner, name)
        setattr(owner, name, new)
    warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
    factory, generators = _FactoryMode(), _GeneratorRule()
    factory.__enter__()
    generators.__enter__()
    _State.modes = [factory, generators]
    _State.installed = True


def uninstall() -> None:
    """Undo :func:`install` (tensors already on the fake device stay wrappers)."""
    if not _State.installed:
        return
    for mode in reversed(_State.modes):
        mode.__exit__(None, None, None)
    _State.modes = []
    for (owner, name), old in _State.saved.items():
        setattr(owner, name, old)
    _State.saved.clear()
    _State.installed = False


@contextlib.contextmanager
def installed(*, strict: bool = True):
    """``with installed(): ...``: the fake GPU for the duration of the block."""
    install(strict=strict)
    try:
        yield
    finally:
        uninstall()


def violations() -> list[str]:
    """Every rule broken since the last :func:`clear` (where each happened, innermost frame)."""
    return list(_State.violations)


def clear() -> None:
    _State.violations.clear()


# ---- notebooks on the fake device ---------------------------------------------------------------
STARTUP = """\
# Written by tests/fakecuda.py: a fake CUDA GPU before the notebook's first cell.
import importlib.util, sys

_spec = importlib.util.spec_from_file_location("fakecuda", {path!r})
_fakecuda = importlib.util.module_from_spec(_spec)
sys.modules["fakecuda"] = _fakecuda
_spec.loader.exec_module(_fakecuda)
_fakecuda.install(strict={strict!r})
del _spec, _fakecuda
"""


def kernel_env(folder: str | os.PathLike, *, strict: bool = True) -> dict[str, str]:
    """Environment for a Jupyter kernel whose IPython installs the fake GPU before any cell
    (an IPython startup file in ``folder``, used as ``$IPYTHONDIR``), with ``cuda`` as the
    course's device (``$REPLEARN_DEVICE``). Nothing of this enters the course library."""
    startup = Path(folder) / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-fakecuda.py").write_text(STARTUP.format(path=str(THIS_FILE), strict=strict))
    return {"IPYTHONDIR": str(Path(folder).resolve()), "REPLEARN_DEVICE": "cuda"}


def run_notebook(
    path,
    output=None,
    *,
    preset: str = "smoke",
    impl: str = "solution",
    timeout: int = 900,
    strict: bool = True,
):
    """Execute a notebook on the fake GPU (``replearn.notebook.run_notebook`` with
    :func:`kernel_env`); returns its ``NotebookRun``."""
    from replearn.notebook import run_notebook as run

    path = Path(path)
    output = Path(output) if output else REPO / "build" / "fakecuda" / path.name
    with tempfile.TemporaryDirectory(prefix="fakecuda-ipython-") as ipython_dir:
        env = kernel_env(ipython_dir, strict=strict)
        return run(path, output, preset=preset, impl=impl, timeout=timeout, extra_env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakecuda", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks on the fake CUDA device")
    run.add_argument("notebooks", nargs="+", type=Path)
    run.add_argument("--preset", default="smoke")
    run.add_argument("--impl", default="solution", choices=("solution", "starter"))
    run.add_argument("--out", type=Path, default=REPO / "build" / "fakecuda")
    run.add_argument("--timeout", type=int, default=900)
    run.add_argument(
        "--record",
        action="store_true",
        help="record violations instead of stopping at the first (see the executed copy)",
    )
    module = sub.add_parser("module", help="run `python -m MODULE ARGS...` on the fake device")
    module.add_argument("module")
    module.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "module":
        import runpy

        install()
        sys.argv = [args.module, *args.args]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        return 0
    failed = 0
    for path in args.notebooks:
        result = run_notebook(
            path,
            args.out / path.name,
            preset=args.preset,
            impl=args.impl,
            timeout=args.timeout,
            strict=not args.record,
        )
        device = result.summary.get("device", "?")
        status = "ok" if result.ok else "FAILED"
        print(
            f"{path.name}: {status} in {result.seconds:.0f} s, device {device} -> {result.output}"
        )
        if not result.ok:
            failed += 1
            print(re.sub(r"\x1b\[[0-9;]*m", "", result.error)[-3000:])  # without colour codes
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
