"""argparse types for the `explorer` subcommands: a bad number is refused while parsing, as one
line naming the flag, before anything is loaded or written."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _checked(kind, ok, rule: str):
    """A type: `kind` parsed from the text, refused unless ok(value) ("must <rule>, got …")."""

    def parse(text: str):
        value = _number(kind, text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must {rule}, got {value}")
        return value

    return parse


positive_int = _checked(int, lambda v: v > 0, "be a positive integer")
nonnegative_int = _checked(int, lambda v: v >= 0, "be 0 or more")
positive_float = _checked(float, lambda v: v > 0, "be a positive number")
nonnegative_float = _checked(float, lambda v: v >= 0, "be 0 or more")
fraction = _checked(float, lambda v: 0 <= v <= 1, "lie in [0, 1]")


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line ("explorer train: error: argument --k: …; see --help"), not
    the usage block followed by the error."""

    def error(self, message: str):
        if self._subcommand_missing(message):
            # `explorer labels` alone: what there is to choose from, not "required: labels_command".
            self.print_help(sys.stderr)
            self.exit(2, f"{self.prog}: error: choose one of the commands above\n")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _subcommand_missing(self, message: str) -> bool:
        wanted = message.removeprefix("the following arguments are required: ")
        return wanted != message and any(
            isinstance(a, argparse._SubParsersAction) and a.dest in wanted.split(", ")
            for a in self._actions
        )


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(:\d+)?$")


def device_name(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps, and one this machine has (checked here, before a model
    loads, rather than by torch's assertion half way into a command)."""
    text = text.strip()
    if not _DEVICE.match(text) or (text.startswith(("auto", "cpu")) and ":" in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (auto, cpu, cuda, cuda:N, mps)")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else f"no CUDA device (torch {torch.__version__})"
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {have}")
    elif text.startswith("mps"):
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here")
    return text


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _no_file_on_the_way(path: Path) -> None:
    """The nearest existing folder above `path` must be a folder, not a file."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder")
            return


def output_file(text: str) -> str:
    """A file to write: not a folder, and no part of its folder path an existing file (checked
    before the work whose result it holds; missing folders are made when it is written)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it")
    _no_file_on_the_way(path)
    return text


def output_folder(text: str) -> str:
    """A folder to write into (made if missing): neither it nor a folder above it a file."""
    _no_file_on_the_way(Path(text) / "x")
    return text


def image_file(text: str) -> str:
    """An image file to write (`output_file`) of a type Pillow writes, known by its suffix."""
    output_file(text)
    if Path(text).suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text}: not an image file name (end it in {', '.join(IMAGE_SUFFIXES)})"
        )
    return text
