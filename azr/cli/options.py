"""The command line's argument types: text turned into a checked value, a bad one answered as a usage error."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from azr.config import TrainConfig
from azr.config.ranges import Range
from azr.errors import ConfigError


def number(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value and rejects it unless ``accept`` holds."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


POSITIVE_INT = number(int, lambda v: v > 0, "a positive integer")
POSITIVE_FLOAT = number(float, lambda v: 0 < v < math.inf, "a positive number")


def setting_type(name: str, kind: type) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value to ``kind`` and lets TrainConfig check it."""
    def check(value: Any) -> None:
        probe = TrainConfig()
        setattr(probe, name, value)
        probe.check_fields()  # combinations of settings are checked once all options are known
    return converted(name, kind, check)


def ranged(name: str, within: Range, kind: type) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value to ``kind`` and checks it against ``within``."""
    return converted(name, kind, lambda value: within.check(name, value))


def converted(name: str, kind: type, check: Callable[[Any], None]) -> Callable[[str], Any]:
    """Return an argparse ``type`` that converts a value to ``kind`` and runs ``check`` (a ConfigError: a usage
    error)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text}") from None
        check(value)
        return value
    return checked(parse, name)


def run_name(text: str) -> str:
    """Return a run name after :func:`azr.checkpoints.runs.check_run_name` has accepted it."""
    from azr.checkpoints.runs import check_run_name  # noqa: PLC0415 - only when --run is given

    return check_run_name(text)


def checked(parse: Callable[[str], Any], name: str = "") -> Callable[[str], Any]:
    """Return an argparse ``type`` that turns the ConfigError of ``parse`` into a usage error (field name cut)."""
    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name} ").rstrip(".")) from None
    return checked
