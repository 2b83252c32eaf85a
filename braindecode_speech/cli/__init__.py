"""The ``braindecode-speech`` command line.

Each module of this package is one subcommand (``check_splits.py`` → ``check-splits``) and
defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules import
their heavy dependencies inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

__all__ = ["main", "build_parser"]


def _commands() -> dict[str, object]:
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        out[info.name.replace("_", "-")] = importlib.import_module(f"{__name__}.{info.name}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="braindecode-speech",
        description="Decode perceived speech from MEG/EEG (Défossez et al. 2023, reproduced).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v: info, -vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
