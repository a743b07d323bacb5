"""Checking options early, with clear messages: string choices (as MONAI's ``look_up_option``) and sizes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Size = tuple[int, int]


def check_option(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ValueError listing them.

    Args:
        name: the option's name, as the user wrote it (e.g. ``"head"``).
        value: the value given.
        choices: the valid values.
    """
    valid = list(choices)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(repr, valid))}")
    return value


def to_size(size: int | Sequence[int], name: str = "size") -> Size:
    """``16`` -> ``(16, 16)``; ``(h, w)`` stays; anything else raises a ValueError."""
    if isinstance(size, int):
        pair = (size, size)
    else:
        pair = tuple(int(s) for s in size)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair  # type: ignore[return-value]
