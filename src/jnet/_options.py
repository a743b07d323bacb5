"""Checking string options the way MONAI's ``look_up_option`` does: early, with the choices."""

from __future__ import annotations

from collections.abc import Iterable


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
