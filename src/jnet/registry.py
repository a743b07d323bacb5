"""One registry for everything chosen by name: backbones, heads, losses, data sources, runtimes.

A :class:`Registry` maps a name to an object (a builder, a class, a reader). Each name is
registered once; looking up an unknown name raises a ValueError that lists the valid ones
(as MONAI's ``look_up_option`` and timm's ``create_model`` do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to objects of one kind, in registration order.

    Args:
        kind: what the names name, for error messages (``"model"``, ``"head"``, ...).

    Example:
        >>> losses = Registry("loss")
        >>> @losses.register("l1")
        ... def l1(a, b):
        ...     return abs(a - b)
        >>> losses.get("l1")(3, 5), losses.names()
        (2, ['l1'])
        >>> losses.get("l2")
        Traceback (most recent call last):
        ...
        ValueError: unknown loss 'l2'; valid choices: 'l1'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a name already taken is a ValueError."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def wrap(item: T) -> T:
            return self.add(name, item)

        return wrap

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises a ValueError listing the valid ones."""
        if name not in self._items:
            valid = ", ".join(map(repr, self._items))
            raise ValueError(f"unknown {self.kind} {name!r}; valid choices: {valid}")
        return self._items[name]

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
