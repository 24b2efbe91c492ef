"""What the command lines share: one-line errors and warnings, and checked argument types.

A bad input ends a command with one line, ``<prog>: error: <what is wrong>``, and exit status 2
(bad arguments) or 1 (a request that cannot be met, e.g. a missing checkpoint) - never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (the usage stays behind --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(prog: str, error) -> None:
    """End the command with ``prog: error: ...`` (one line, on stderr) and exit status 1."""
    print(f"{prog}: error: " + " ".join(str(error).split()), file=sys.stderr)
    sys.exit(1)


@contextmanager
def one_line_warnings(prog: str):
    """Show warnings raised inside as ``prog: warning: ...``, one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        print(f"{prog}: warning: {w.message}", file=sys.stderr)


def _typed(check, what: str):
    def parse(text: str):
        try:
            value = float(text) if what.endswith("number") else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


positive_int = _typed(lambda v: v > 0, "a positive integer")
non_negative_int = _typed(lambda v: v >= 0, "an integer >= 0")
positive_number = _typed(lambda v: v > 0 and v != float("inf"), "a positive number")


def parse_value(text: str):
    """A ``--set KEY=VALUE`` value: JSON (3, 1e-4, true, null, "x"), Python's None/True/False, or
    else the text itself (so ``dataset=multi-dsprites`` needs no quotes). The config checks it."""
    python = {"None": None, "True": True, "False": False}
    if text in python:
        return python[text]
    try:
        return json.loads(text)
    except ValueError:
        return text
