"""Typed registries of components, filled from dcframe itself and from entry points.

One registry per component kind. In-tree components and third-party ones enter through
the same :meth:`Registry.add`, which checks the type and the name, refuses duplicates
(naming both origins) and records where each entry came from. Entry points are read
lazily, once, with the standard library's :mod:`importlib.metadata`.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from dcframe.errors import PluginLoadError, UnknownComponentError, UserError
from dcframe.interfaces import summary_of
from dcframe.params import Params

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")


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
class Entry(Generic[T]):
    """A registered component class."""

    name: str
    cls: type[T]
    origin: Origin

    @property
    def params_model(self) -> type[Params]:
        return self.cls.Params  # type: ignore[attr-defined]

    @property
    def summary(self) -> str:
        return summary_of(self.cls)


@dataclass(frozen=True)
class FailedEntry:
    """An entry point that could not be loaded or registered; kept to explain, never to use."""

    name: str
    kind: str
    origin: Origin
    error: BaseException

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class Registry(Generic[T]):
    """Components of one kind, by name.

    Args:
        kind: Singular noun used in messages ("clusterer").
        base: Class every entry must subclass.
        group: Entry-point group scanned for third-party entries ("dcframe.clusterers").
        section: Recipe section that names a component of this kind ("clusterer").
        builtins: Callable returning the in-tree classes by name; called lazily so that
            importing dcframe stays cheap.
    """

    def __init__(
        self,
        kind: str,
        base: type,
        group: str,
        section: str,
        builtins: Callable[[], dict[str, type[T]]],
    ) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self.section = section
        self._builtins = builtins
        self._entries: dict[str, Entry[T]] = {}
        self._failed: dict[str, FailedEntry] = {}
        self._loaded = False

    # ------------------------------------------------------------------ filling

    def add(self, name: str, cls: object, origin: Origin) -> Entry[T]:
        """Register ``cls`` under ``name``; the only way in, for built-ins and plugins alike.

        Raises:
            UserError: bad name, wrong type, missing parameters model, or a duplicate name
                (the message names both origins).
        """
        if not _NAME.match(name):
            raise UserError(
                f"{self.kind} name {name!r} from {origin} is invalid: use lower-case letters, "
                "digits, '-' or '_', starting with a letter"
            )
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise UserError(
                f"{self.kind} {name!r} from {origin} is {cls!r}, "
                f"not a subclass of {self.base.__module__}.{self.base.__qualname__}"
            )
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, Params)):
            raise UserError(
                f"{self.kind} {name!r} from {origin} has no Params model "
                "(a subclass of dcframe.params.Params)"
            )
        if name in self._entries:
            raise UserError(
                f"duplicate {self.kind} {name!r}: registered by {self._entries[name].origin} "
                f"and again by {origin}; uninstall one of them"
            )
        entry: Entry[T] = Entry(name, cast(type[T], cls), origin)
        self._entries[name] = entry
        return entry

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for name, cls in self._builtins().items():
            self.add(name, cls, Origin("dcframe", _dcframe_version(), cls.__module__))
        for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: e.name):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist
        origin = Origin(
            dist.name if dist else "unknown distribution",
            dist.version if dist else "?",
            ep.value,
        )
        try:
            self.add(ep.name, ep.load(), origin)
        except Exception as error:  # a broken plugin must never break dcframe itself
            self._failed[ep.name] = FailedEntry(ep.name, self.kind, origin, error)

    # ----------------------------------------------------------------- querying

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        return [e.name for e in self]

    @property
    def failed(self) -> list[FailedEntry]:
        self._load()
        return sorted(self._failed.values(), key=lambda f: f.name)

    def get(self, name: str) -> Entry[T]:
        """The entry called ``name``.

        Raises:
            PluginLoadError: the name belongs to a plugin that failed to load (chained).
            UnknownComponentError: no such name; the message suggests close names and
                lists what is available with origins.
        """
        self._load()
        if name in self._entries:
            return self._entries[name]
        if name in self._failed:
            failed = self._failed[name]
            raise PluginLoadError(self.failure_message(failed)) from failed.error
        raise UnknownComponentError(self.unknown_message(name))

    def failure_message(self, failed: FailedEntry) -> str:
        return (
            f"{self.kind} {failed.name!r} from {failed.origin} failed to load: {failed.message}; "
            f"fix or reinstall {failed.origin.distribution}"
        )

    def unknown_message(self, name: str, path: str | None = None) -> str:
        """Explain an unknown name: a suggestion, then every available entry and its origin."""
        where = f" in {path or self.section + '.name'}"
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        available = ", ".join(f"{e.name} [{e.origin.distribution}]" for e in self) or "none"
        return f"unknown {self.kind} {name!r}{where}{hint} Available: {available}"


def _dcframe_version() -> str:
    from dcframe import __version__

    return __version__
