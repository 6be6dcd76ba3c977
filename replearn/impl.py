"""Load the student's or the reference implementation of an assignment module.

Every notebook imports the module under test through :func:`load`, so the same notebook runs

* against the student's working copy, ``starter_code/<module>.py`` (the default), or
* against the reference, ``solutions/<module>.py``, for self-learners and CI.

Choose with ``load(name, impl="solution")`` or the ``REPLEARN_IMPL`` environment variable
(``starter`` / ``solution``). The course folder that holds ``starter_code/`` and ``solutions/`` is
``root=``, else ``$REPLEARN_ROOT``, else the first folder holding either of them found upwards
from the working directory, then upwards from this file. On Colab, where a student uploads only
their own files, ``student_dir=`` or ``$REPLEARN_STUDENT_DIR`` names the folder that holds the
student's modules directly.

Modules are imported by file path, never through ``sys.path``, so a student module cannot be
shadowed by an installed package of the same name (and cannot shadow one). Each is registered
under an unambiguous name such as ``replearn_impl.starter.transfer_learning`` so that pickling
and dataclasses, which look classes up in ``sys.modules``, work.

Reloading: ``load`` hashes the file's bytes on every call and re-executes the module when they
(or the file's path) changed since the last load, so re-running a notebook's set-up cell after an
edit picks the edit up; an unchanged file returns the module already loaded (``reload=True``
forces a fresh import). The source is always compiled from the file itself, never from a cached
``__pycache__`` file, whose timestamp check misses edits made within the same second. Objects
created before a reload keep pointing at the old classes, as with ``importlib.reload``.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import linecache
import os
import sys
import types
import warnings
from pathlib import Path

__all__ = [
    "IMPL_ENV",
    "ROOT_ENV",
    "STUDENT_DIR_ENV",
    "IMPLS",
    "ImplError",
    "load",
    "describe",
    "warn_if_shadowed",
    "module_names",
    "find_root",
]

IMPL_ENV = "REPLEARN_IMPL"
ROOT_ENV = "REPLEARN_ROOT"
STUDENT_DIR_ENV = "REPLEARN_STUDENT_DIR"

# impl name -> folder (relative to the course root) holding that implementation
IMPLS: dict[str, str] = {"starter": "starter_code", "solution": "solutions"}
DEFAULT_IMPL = "starter"

# Parent package of every module loaded here; never a real package on disk.
_PACKAGE = "replearn_impl"


class ImplError(ImportError):
    """The requested implementation could not be found or loaded (the message says how to fix it)."""


# --------------------------------------------------------------------------------------------
# Where things are
# --------------------------------------------------------------------------------------------


def _resolve_impl(impl: str | None) -> str:
    """``impl`` argument, else ``$REPLEARN_IMPL``, else ``starter``; anything else is an error."""
    source = "impl="
    if impl is None:
        impl = os.environ.get(IMPL_ENV) or None
        source = f"${IMPL_ENV}="
    if impl is None:
        return DEFAULT_IMPL
    if not isinstance(impl, str) or impl.strip().lower() not in IMPLS:
        raise ValueError(
            f"{source}{impl!r} is not an implementation: use 'starter' (the student's code in "
            f"starter_code/) or 'solution' (the reference in solutions/)."
        )
    return impl.strip().lower()


def _is_course_root(folder: Path) -> bool:
    return any((folder / sub).is_dir() for sub in IMPLS.values())


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The course folder holding ``starter_code/`` and/or ``solutions/``.

    ``root`` if given, else ``$REPLEARN_ROOT``, else the nearest such folder above the working
    directory, else above this file. Raises :class:`ImplError` saying how to point at it.
    """
    if root is None and os.environ.get(ROOT_ENV):
        root, origin = os.environ[ROOT_ENV], f"${ROOT_ENV}"
    else:
        origin = "root="
    if root is not None:
        folder = Path(root).expanduser().resolve()
        if not folder.is_dir():
            raise ImplError(f"{origin}{str(root)!r} is not a folder.")
        if not _is_course_root(folder):
            raise ImplError(
                f"{origin}{str(root)!r} holds neither starter_code/ nor solutions/: point it at "
                "the course folder that contains them."
            )
        return folder
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            if _is_course_root(folder):
                return folder
    raise ImplError(
        "Could not find the course folder (the one holding starter_code/ and solutions/) above "
        f"{starts[0]} or above {starts[1]}. Point at it with the environment variable "
        f"{ROOT_ENV}=/path/to/course, or with load(..., root='/path/to/course'); on Colab, put "
        f"your own modules in one folder and use {STUDENT_DIR_ENV}=/path/to/folder or "
        "load(..., student_dir='/path/to/folder')."
    )


def _python_modules(folder: Path) -> list[str]:
    """Names of the importable ``*.py`` modules directly in ``folder`` (no private ones)."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def module_names(root: str | os.PathLike | None = None, *, impl: str | None = None) -> list[str]:
    """The assignment modules under ``solutions/`` or ``starter_code/`` (both when ``impl`` is None)."""
    folder = find_root(root)
    subfolders = IMPLS.values() if impl is None else [IMPLS[_resolve_impl(impl)]]
    return sorted({name for sub in subfolders for name in _python_modules(folder / sub)})


def _check_module_name(module_name: str) -> str:
    if not isinstance(module_name, str):
        raise TypeError(f"module_name must be a string, got {type(module_name).__name__}.")
    name = module_name[:-3] if module_name.endswith(".py") else module_name
    if not name.isidentifier():
        raise ValueError(
            f"module_name={module_name!r} is not a bare module name: pass the file's stem, "
            "e.g. load('contrastive_learning')."
        )
    return name


def _module_file(
    name: str, impl: str, root: str | os.PathLike | None, student_dir: str | os.PathLike | None
) -> tuple[Path, str]:
    """The file implementing ``name`` and where it comes from (``starter``/``solution``/``student_dir``)."""
    if impl == "starter":
        if student_dir is None and os.environ.get(STUDENT_DIR_ENV):
            student_dir, origin = os.environ[STUDENT_DIR_ENV], f"${STUDENT_DIR_ENV}"
        else:
            origin = "student_dir="
        if student_dir is not None:
            folder = Path(student_dir).expanduser().resolve()
            if not folder.is_dir():
                raise ImplError(f"{origin}{str(student_dir)!r} is not a folder.")
            path = folder / f"{name}.py"
            if not path.is_file():
                raise ImplError(
                    f"{name}.py is not in {folder} ({origin}). "
                    f"Modules there: {_python_modules(folder) or 'none'}. Upload your {name}.py "
                    "into that folder, or point the variable at the folder that holds it."
                )
            return path, "student_dir"

    folder = find_root(root)
    sub = folder / IMPLS[impl]
    path = sub / f"{name}.py"
    if path.is_file():
        return path, impl
    if impl == "solution" and not sub.is_dir():
        raise ImplError(
            f"No solutions/ folder in {folder}: the reference solutions are not part of the "
            "student release. Use impl='starter' (your own code), or point "
            f"{ROOT_ENV} / root= at a full course checkout."
        )
    if not sub.is_dir():
        raise ImplError(
            f"No {IMPLS[impl]}/ folder in {folder}. Generate the stubs with "
            "`python -m instructor.release starter`, or point "
            f"{ROOT_ENV} / root= at the course folder."
        )
    available = _python_modules(sub)
    raise ImplError(f"{path} does not exist. Modules in {sub}: {', '.join(available) or 'none'}.")


# --------------------------------------------------------------------------------------------
# Importing
# --------------------------------------------------------------------------------------------


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles from the ``.py`` file on every import: never reads or writes ``__pycache__``.

    ``SourceFileLoader`` validates bytecode by mtime in whole seconds plus size, so an edit made
    within the same second that keeps the size (``a + b`` -> ``a - b``) would run stale code.
    """

    def get_code(self, fullname: str) -> types.CodeType:
        source = self.get_data(self.path)
        return self.source_to_code(source, self.path)


def _ensure_package(name: str) -> None:
    """Register empty parent packages (``replearn_impl``, ``replearn_impl.starter``) for pickle."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        pkg_name = ".".join(parts[:depth])
        if pkg_name not in sys.modules:
            pkg = types.ModuleType(pkg_name, "Namespace of modules loaded by replearn.impl.load.")
            pkg.__path__ = []  # a package with nothing importable on disk
            sys.modules[pkg_name] = pkg
            if depth > 1:
                setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], pkg)


def load(
    module_name: str,
    impl: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
    reload: bool = False,
) -> types.ModuleType:
    """Import the student's (``impl="starter"``) or the reference (``"solution"``) module.

    Args:
        module_name: the assignment module's name, e.g. ``"contrastive_learning"``.
        impl: ``"starter"`` or ``"solution"``; default ``$REPLEARN_IMPL``, else ``"starter"``.
        root: course folder with ``starter_code/`` and ``solutions/``; default ``$REPLEARN_ROOT``,
            else searched upwards from the working directory, then from this file.
        student_dir: folder holding the student's modules directly (Colab upload); default
            ``$REPLEARN_STUDENT_DIR``. Used for ``impl="starter"`` only.
        reload: re-execute the module even if its file did not change.

    Returns:
        The module, registered in ``sys.modules`` as ``replearn_impl.<impl>.<module_name>``, with
        ``module.__replearn_impl__ = {"impl": ..., "path": ..., "sha256": ...}``.
    """
    name = _check_module_name(module_name)
    impl = _resolve_impl(impl)
    path, origin = _module_file(name, impl, root, student_dir)
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()

    qualified = f"{_PACKAGE}.{origin}.{name}"
    cached = sys.modules.get(qualified)
    info = getattr(cached, "__replearn_impl__", None)
    if (
        not reload
        and isinstance(info, dict)
        and info.get("path") == str(path)
        and info.get("sha256") == digest
    ):
        return cached

    loader = _SourceOnlyLoader(qualified, str(path))
    spec = importlib.util.spec_from_file_location(qualified, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    module.__replearn_impl__ = {"impl": impl, "path": str(path), "sha256": digest}
    _ensure_package(qualified)
    linecache.checkcache(str(path))  # tracebacks show the edited source, not a stale copy
    sys.modules[qualified] = module  # before executing: dataclasses look the module up here
    try:
        loader.exec_module(module)
    except BaseException:
        # A module that fails to import must not be returned by the next call as if it worked.
        if sys.modules.get(qualified) is module:
            del sys.modules[qualified]
        raise
    setattr(sys.modules[f"{_PACKAGE}.{origin}"], name, module)
    return module


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

_IMPL_WORDS = {
    "starter": "your implementation (starter)",
    "solution": "the reference solution",
}


def describe(module: types.ModuleType) -> str:
    """One line saying which implementation ``module`` is and where it was loaded from."""
    name = module.__name__.rsplit(".", 1)[-1]
    info = getattr(module, "__replearn_impl__", None)
    if not isinstance(info, dict):
        where = getattr(module, "__file__", None) or "a built-in or namespace module"
        return f"{name}: imported directly from {where} (not through replearn.impl.load)"
    words = _IMPL_WORDS.get(info.get("impl"), str(info.get("impl")))
    return f"{name}: {words} from {info.get('path')}"


def warn_if_shadowed(
    module_name: str,
    *,
    root: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
) -> str | None:
    """Warn when ``import <module_name>`` would not import the course's file.

    :func:`load` imports by path, so it is immune; but a plain ``import transformers`` in a cell
    (or in the student's own code) picks the first match on ``sys.path``, e.g. a preinstalled
    package of the same name. Returns where that import would come from, or None when it would
    find nothing or one of the course's own files (``starter_code/``, ``solutions/``,
    ``student_dir``).
    """
    name = _check_module_name(module_name)
    loaded = sys.modules.get(name)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a broken or spec-less entry in sys.modules
        spec = None
    origin = getattr(loaded, "__file__", None) if loaded is not None else None
    if origin is None and spec is not None:
        origin = spec.origin if spec.origin not in (None, "namespace") else None
        if origin is None and spec.submodule_search_locations:
            origin = str(list(spec.submodule_search_locations)[0])
    if origin is None and spec is None and loaded is None:
        return None
    origin = origin or "a built-in module"

    own: set[Path] = set()
    student_folder = student_dir or os.environ.get(STUDENT_DIR_ENV)
    if student_folder:
        own.add((Path(student_folder).expanduser() / f"{name}.py").resolve())
    try:
        course = find_root(root)
        own.update((course / sub / f"{name}.py").resolve() for sub in IMPLS.values())
    except ImplError:
        pass
    try:
        if Path(origin).resolve() in own:
            return None
    except (OSError, ValueError):
        pass
    warnings.warn(
        f"`import {name}` would load {origin}, not the course's {name}.py. Use "
        f"replearn.impl.load({name!r}) (which imports by path) instead of `import {name}`, "
        "and do not put the assignment folder on sys.path.",
        UserWarning,
        stacklevel=2,
    )
    return origin
