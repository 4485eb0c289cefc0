"""One registry type for every extension point: provider and signal ``type:``, selection
``algorithm:``, plugin keys, trainers.

A registry maps a YAML name to an implementation and refuses a second entry under a name
already taken (two modules claiming ``type: openai`` is a bug to see at import, not a
silent override). Unknown names raise ``KeyError`` with the known ones listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, entries: Iterable[tuple[str, T]] = ()) -> None:
        self.kind = kind  # what the names are, for messages: "provider type", "algorithm"
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.register(name, entry)

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} '{name}' (known: {', '.join(sorted(self._entries))})"
            ) from None

    def __setitem__(self, name: str, entry: T) -> None:
        """A deliberate replacement (tests swap an implementation); ``register`` is the
        checked way to add one."""
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
