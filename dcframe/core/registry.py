"""Typed registries of components, filled from dcframe itself and from entry points.

One registry per component kind. In-tree components and third-party ones enter through
the same :meth:`Registry.add`, which checks the type and the name, refuses duplicates
(naming both origins), checks that the parameters model is complete, and records where
each entry came from. Entry points are read lazily with the standard library's
:mod:`importlib.metadata`, and imported only when needed: looking a name up (:meth:`Registry.get`,
``in``, :meth:`Registry.entries`) imports the entry points of that name alone; listing
(iterating, :meth:`Registry.names`, :attr:`Registry.failed`) imports them all. Built-in
components are :class:`Builtin` specs, whose parameters models are torch-free and whose
classes are imported on first use of :attr:`Entry.cls`: a recipe naming only built-in
components is validated without importing torch.

A plugin can only break itself: whatever it raises while importing or registering
(``sys.exit()`` included; only ``KeyboardInterrupt`` passes) makes it a :class:`FailedEntry`,
listed with the reason by ``dcframe plugins list``; only recipes naming it fail. What it
prints meanwhile goes to stderr (:func:`plugin_output_to_stderr`).

Two environment variables, read whenever a registry loads entries, help with a broken
environment (as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does):

``DCFRAME_DISABLE_PLUGIN_AUTOLOAD``
    Any non-empty value: no entry point is loaded, only dcframe's built-in components.
``DCFRAME_BLOCK_PLUGINS``
    Comma-separated names of entry points (component names, e.g. ``timm``) or of
    distributions (e.g. ``dcframe-timm``) not to import; they are listed as "blocked".
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.metadata as metadata
import os
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, Field, create_model

from dcframe.core.errors import PluginLoadError, UnknownComponentError, UserError
from dcframe.core.params import Params
from dcframe.core.version import __version__

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")

#: Any non-empty value: load no entry points, only the built-in components.
DISABLE_AUTOLOAD_ENV = "DCFRAME_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated entry-point or distribution names not to load ("timm,dcframe-foo").
BLOCK_ENV = "DCFRAME_BLOCK_PLUGINS"


def autoload_disabled() -> bool:
    """Whether ``DCFRAME_DISABLE_PLUGIN_AUTOLOAD`` is set (to anything but "")."""
    return bool(os.environ.get(DISABLE_AUTOLOAD_ENV))


def blocked_names() -> set[str]:
    """The normalized names listed in ``DCFRAME_BLOCK_PLUGINS``."""
    return {_normalize(n) for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout inside the block to stderr instead.

    Plugins run inside it (while imported, and while a command runs their code), so that
    their prints never mix with dcframe's machine-readable stdout (``--json``, the run
    directory of ``dcframe run``). Both levels are redirected: ``sys.stdout`` for Python's
    ``print``, and the file descriptor under it (usually 1) for C extensions and child
    processes. The descriptor is redirected only where ``sys.stdout`` has one (not under a
    test's ``StringIO``); nested blocks are harmless.
    """
    stdout_fd, stderr_fd = _fileno(sys.stdout), _fileno(sys.stderr)
    saved = None
    if stdout_fd is not None and stderr_fd is not None and stdout_fd != stderr_fd:
        _flush(sys.stdout)  # what was written before the block belongs on the real stdout
        saved = os.dup(stdout_fd)
        os.dup2(stderr_fd, stdout_fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None and stdout_fd is not None:
            _flush(sys.stdout)  # a C extension's buffered printf goes out while redirected
            os.dup2(saved, stdout_fd)
            os.close(saved)


def _fileno(stream: object) -> int | None:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # StringIO, a closed or detached stream
        return None


def _flush(stream: Any) -> None:
    """Flush ``stream`` and the C library's stdio buffers (C extensions' ``printf``)."""
    import ctypes  # here: only needed when a stdout with a descriptor is redirected

    stream.flush()
    with contextlib.suppress(AttributeError, OSError, TypeError):  # no C library (Windows)
        ctypes.CDLL(None).fflush(None)


def _normalize(name: str) -> str:
    # Distribution names compare like pip does (PEP 503): case and -_. runs do not matter.
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


@dataclass(frozen=True)
class Origin:
    """Where a registry entry came from: dcframe itself or an installed distribution."""

    distribution: str
    version: str
    module: str

    @property
    def builtin(self) -> bool:
        return self.distribution == "dcframe"

    def __str__(self) -> str:
        if self.builtin:
            return f"dcframe (built-in, {self.module})"
        return f"{self.distribution} {self.version} ({self.module})"


@dataclass(frozen=True)
class Builtin:
    """A built-in component, given by where its class is and by its (torch-free) parameters
    model, so that registering it imports neither the class nor torch.

    Attributes:
        path: ``"module:Class"``, the module defining the class (imported on first use).
        params: The class's ``Params``.
    """

    path: str
    params: type[Params]

    @property
    def module(self) -> str:
        return self.path.partition(":")[0]

    def load(self) -> object:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its name, parameters model, origin and class.

    ``cls`` is imported on first use for a built-in (the components import torch); a
    plugin's class was imported to register it.
    """

    name: str
    params_model: type[Params]
    origin: Origin
    load: Callable[[], type[T]] = field(repr=False, compare=False)

    @functools.cached_property
    def cls(self) -> type[T]:
        return self.load()

    @property
    def summary(self) -> str:
        # The class's module has imported the interfaces already; importing them here, not
        # at the top, keeps ``import dcframe.core.registry`` free of torch.
        from dcframe.core.interfaces import summary_of

        return summary_of(self.cls)


@dataclass(frozen=True)
class FailedEntry:
    """An entry point that cannot be used; kept to explain, never to use.

    Attributes:
        name: The entry point's name (the component name it would have had).
        kind: The registry's kind ("clusterer").
        origin: Its distribution.
        error: What went wrong (for a blocked entry, a :class:`PluginLoadError` saying so).
        status: "failed" (it raised while importing or registering) or "blocked" (named
            by ``DCFRAME_BLOCK_PLUGINS``, never imported).
        stage: Where it failed: "import" (``ep.load()``) or "register" (refused by
            :meth:`Registry.add`, whose message already names the component).
    """

    name: str
    kind: str
    origin: Origin
    error: BaseException
    status: Literal["failed", "blocked"] = "failed"
    stage: Literal["import", "register"] = "import"

    @property
    def message(self) -> str:
        if self.status == "blocked" or isinstance(self.error, UserError):
            return str(self.error)  # dcframe's own words, not an exception dump
        if isinstance(self.error, SystemExit):
            code = "" if self.error.code is None else repr(self.error.code)
            return f"called sys.exit({code}) while {self.stage}ing"
        return f"{type(self.error).__name__}: {self.error}"


class Registry(Generic[T]):
    """Components of one kind, by name.

    Args:
        kind: Singular noun used in messages ("clusterer").
        base: Class every entry must subclass, or a callable returning it, called on first
            use (the component interfaces import torch, which ``dcframe --help`` never needs).
        group: Entry-point group scanned for third-party entries ("dcframe.clusterers").
        section: Recipe section that names a component of this kind ("clusterer").
        builtins: Callable returning the in-tree components by name (classes, or
            :class:`Builtin` specs); called lazily so that importing dcframe stays cheap.
    """

    def __init__(
        self,
        kind: str,
        base: type | Callable[[], type],
        group: str,
        section: str,
        builtins: Callable[[], Mapping[str, type[T] | Builtin]],
    ) -> None:
        self.kind = kind
        self._base = base
        self.group = group
        self.section = section
        self._builtins = builtins
        self._entries: dict[str, Entry[T]] = {}
        self._failed: dict[str, FailedEntry] = {}
        self._loaded = False
        #: Whether the last load skipped entry points (``DCFRAME_DISABLE_PLUGIN_AUTOLOAD``).
        self.autoload_disabled = False

    @property
    def base(self) -> type:
        """The class every entry subclasses (resolved on first use when given lazily)."""
        if not isinstance(self._base, type):
            self._base = self._base()
        return self._base

    # ------------------------------------------------------------------ filling

    def add(self, name: str, cls: object, origin: Origin) -> Entry[T]:
        """Register ``cls`` under ``name``; the only way in, for built-ins and plugins alike.

        ``cls`` is a class, or a :class:`Builtin`, whose class is checked on first use.

        Raises:
            UserError: bad name, wrong type, missing parameters model, or a duplicate name
                (the message names both origins).
        """
        if not _NAME.match(name):
            raise UserError(
                f"{self.kind} name {name!r} from {origin} is invalid: use lower-case letters, "
                "digits, '-' or '_', starting with a letter"
            )
        if isinstance(cls, Builtin):
            spec = cls
            params: object = spec.params

            def load() -> type[T]:
                return self._checked(name, origin, spec.load(), spec.params)
        else:
            checked = self._checked(name, origin, cls)
            params = getattr(checked, "Params", None)

            def load() -> type[T]:
                return checked

        if not (isinstance(params, type) and issubclass(params, Params)):
            raise UserError(
                f"{self.kind} {name!r} from {origin} has no Params model "
                "(a subclass of dcframe.core.params.Params)"
            )
        _check_params_model(f"{self.kind} {name!r} from {origin}", name, params)
        if name in self._entries:
            raise UserError(
                f"duplicate {self.kind} {name!r}: registered by {self._entries[name].origin} "
                f"and again by {origin}; uninstall one of them"
            )
        entry: Entry[T] = Entry(name, params, origin, load)
        self._entries[name] = entry
        return entry

    def _checked(
        self, name: str, origin: Origin, cls: object, params: type[Params] | None = None
    ) -> type[T]:
        """``cls``, refused unless it subclasses the base (and, if given, has ``params``)."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise UserError(
                f"{self.kind} {name!r} from {origin} is {cls!r}, "
                f"not a subclass of {self.base.__module__}.{self.base.__qualname__}"
            )
        if params is not None and getattr(cls, "Params", None) is not params:
            raise UserError(f"{self.kind} {name!r} from {origin}: its Params is not {params!r}")
        return cast(type[T], cls)

    def _load(self, names: Iterable[str] | None = None) -> None:
        """Register the built-ins and entry points called one of ``names`` (all when None).

        Each name is loaded from all its sources at once (its built-in, its entry points),
        so it ends up registered or failed exactly as a load of everything would leave it.
        """
        if self._loaded:
            return
        builtins = self._builtins()
        # Read the environment now, not at import, so that it applies to this load.
        self.autoload_disabled = autoload_disabled()
        eps = [] if self.autoload_disabled else metadata.entry_points(group=self.group)
        wanted = [*builtins, *(ep.name for ep in eps)] if names is None else names
        todo = {n for n in wanted if n not in self._entries and n not in self._failed}
        self._loaded = names is None
        for name, cls in builtins.items():
            if name in todo:
                module = cls.module if isinstance(cls, Builtin) else cls.__module__
                self.add(name, cls, Origin("dcframe", __version__, module))
        blocked = blocked_names()
        for ep in sorted(eps, key=lambda e: e.name):
            if ep.name in todo:
                self._load_entry_point(ep, blocked)

    def _load_entry_point(self, ep: metadata.EntryPoint, blocked: set[str]) -> None:
        dist = ep.dist
        origin = Origin(
            dist.name if dist else "unknown distribution",
            dist.version if dist else "?",
            ep.value,
        )
        matched = {_normalize(ep.name), _normalize(origin.distribution)} & blocked
        if matched:
            reason = PluginLoadError(
                f"blocked by {BLOCK_ENV} (it lists {sorted(matched)[0]!r}), so not imported"
            )
            self._failed[ep.name] = FailedEntry(ep.name, self.kind, origin, reason, "blocked")
            return
        stage: Literal["import", "register"] = "import"
        try:
            with plugin_output_to_stderr():  # stdout may be machine-readable (--json)
                cls = ep.load()
                stage = "register"
                self.add(ep.name, cls, origin)
        except KeyboardInterrupt:  # the user's, not the plugin's
            raise
        except BaseException as error:
            # A broken plugin must never break dcframe itself, not even by sys.exit() at
            # import (SystemExit) or by raising GeneratorExit: none of this code is a
            # generator, so any BaseException here comes from the plugin.
            self._failed[ep.name] = FailedEntry(ep.name, self.kind, origin, error, stage=stage)

    # ----------------------------------------------------------------- querying

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load([name])
        return name in self._entries

    def entries(self, names: Iterable[str]) -> list[Entry[T]]:
        """The registered entries among ``names``, sorted; only the plugins called so are
        imported (:meth:`get` explains a name that is missing)."""
        wanted = set(names)
        self._load(wanted)
        return [self._entries[n] for n in sorted(wanted) if n in self._entries]

    def names(self) -> list[str]:
        return [e.name for e in self]

    @property
    def failed(self) -> list[FailedEntry]:
        """Entry points that cannot be used: failed ones and blocked ones (see ``status``)."""
        self._load()
        return sorted(self._failed.values(), key=lambda f: f.name)

    def get(self, name: str) -> Entry[T]:
        """The entry called ``name``.

        Raises:
            PluginLoadError: the name belongs to a plugin that failed to load (chained).
            UnknownComponentError: no such name; the message suggests close names and
                lists what is available with origins.
        """
        self._load([name])
        if name in self._entries:
            return self._entries[name]
        if name in self._failed:
            failed = self._failed[name]
            raise PluginLoadError(self.failure_message(failed)) from failed.error
        raise UnknownComponentError(self.unknown_message(name))

    def failure_message(self, failed: FailedEntry) -> str:
        if failed.status == "blocked":
            return (
                f"{self.kind} {failed.name!r} from {failed.origin} is {failed.message}; "
                f"remove it from {BLOCK_ENV} to use it"
            )
        fix = f"fix or reinstall {failed.origin.distribution}"
        if failed.stage == "register" and isinstance(failed.error, UserError):
            return f"{failed.message}; {fix}"  # add() named the component already
        return (
            f"{self.kind} {failed.name!r} from {failed.origin} failed to load: "
            f"{failed.message}; {fix}"
        )

    def unknown_message(self, name: str, path: str | None = None) -> str:
        """Explain an unknown name: a suggestion, then every available entry and its origin."""
        where = f" in {path or self.section + '.name'}"
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        available = ", ".join(f"{e.name} [{e.origin.distribution}]" for e in self) or "none"
        skipped = (
            f" (plugins are not loaded: {DISABLE_AUTOLOAD_ENV} is set)"
            if self.autoload_disabled
            else ""
        )
        return f"unknown {self.kind} {name!r}{where}{hint} Available: {available}{skipped}"


def _check_params_model(label: str, name: str, params: type[Params]) -> None:
    """Refuse a parameters model that pydantic cannot complete.

    An annotation that never resolves (``x: "NoSuchType"``) leaves the class defined but
    unusable; left in the registry, it would break the recipe model, so every recipe.
    Here, at the one door, it breaks only this component. The probe is what
    :mod:`dcframe.recipe.model` does with the model: a subclass with a literal ``name`` field,
    and its JSON schema (``dcframe recipe schema``).

    Raises:
        UserError: naming the component, the model and pydantic's reason.
    """
    try:
        # The plugin's module is fully imported by now, so legitimate forward references
        # resolve; a rebuild of a complete model does nothing.
        params.model_rebuild(raise_errors=True)
        tag: Any = Literal[name]
        probe = create_model(f"probe:{name}", __base__=params, name=(tag, Field(description="")))
        probe.model_json_schema()
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"{label}: its Params model {params.__module__}.{params.__qualname__} cannot be "
            f"used ({type(error).__name__}: {reason}); every field needs a type that exists "
            "and that pydantic can validate"
        ) from error
    gap = _null_gap(params)
    if gap:
        raise UserError(
            f"{label}: its Params model {params.__module__}.{params.__qualname__} has {gap}; "
            "TOML has no null, so a recipe cannot say None: a field may take None only as "
            "its default (a saved recipe leaves it out, and reading it back gives None)"
        )


def _null_gap(model: type[BaseModel], prefix: str = "") -> str | None:
    """The first field of ``model`` (or of a model nested in it) whose None a recipe could
    not write back, described; None when there is none."""
    for key, info in model.model_fields.items():
        annotation = info.annotation
        members = get_args(annotation) if get_origin(annotation) in _UNIONS else (annotation,)
        if type(None) in members and info.default is not None:
            return f"field {prefix}{key}, which may be None but does not default to None"
        for member in members:
            if member is not type(None) and _holds_none(member):
                return f"field {prefix}{key}, which may hold None inside an array or table"
            if isinstance(member, type) and issubclass(member, BaseModel):
                gap = _null_gap(member, f"{prefix}{key}.")
                if gap:
                    return gap
    return None


_UNIONS = (Union, types.UnionType)


def _holds_none(annotation: Any) -> bool:
    """Whether None is allowed anywhere within ``annotation`` (``list[int | None]``)."""
    return any(arg is type(None) or _holds_none(arg) for arg in get_args(annotation))
