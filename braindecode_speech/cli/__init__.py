"""The ``braindecode-speech`` command line.

Each module of this package is one subcommand (``check_splits.py`` → ``check-splits``) and
defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules import
their heavy dependencies inside ``run`` so that ``--help`` stays fast.

Expected errors (a bad config, a missing or damaged input file, see :data:`EXPECTED_ERRORS`)
end in one line ``error: <message>`` on stderr and exit code :data:`EXIT_INPUT_ERROR`, with
the traceback only under ``-vv``; any other exception keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from collections.abc import Callable

__all__ = ["main", "build_parser", "run_command", "EXPECTED_ERRORS", "EXIT_INPUT_ERROR"]

#: exit code of a run refused for bad input (argparse's usage errors exit 2 too; 1 is kept for
#: problems found by ``check`` and ``check-splits`` and for failed downloads or grid runs)
EXIT_INPUT_ERROR = 2

#: the project's error types for bad input, ``"module:Class"``; their messages name the file or
#: config key and the problem. A module that was never imported cannot have raised its error,
#: so none is imported just to catch it.
EXPECTED_ERRORS = (
    "braindecode_speech.config:ConfigError",
    "braindecode_speech.data.study:StudyError",
    "braindecode_speech.data.events:EventsError",
    "braindecode_speech.data.labels:LabelError",
    "braindecode_speech.training.trainer:CheckpointError",
    "braindecode_speech.data.cache:CacheError",
    "braindecode_speech.features.audio:AudioError",
    "braindecode_speech.data.studies.presentation_log:LogError",
    "braindecode_speech.data.studies.download:DownloadError",
    "braindecode_speech.simulation.tts:TTSError",
    "braindecode_speech.evaluation.report:ReportError",
    "braindecode_speech.sharing.folder:SharingError",
)

#: operating-system errors that are the user's input (a path that is not there or not readable)
_EXPECTED_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


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
    return run_command(args._run, args)


def run_command(command: Callable[[argparse.Namespace], int | None],
                args: argparse.Namespace) -> int:
    """``command(args)`` with logging at ``args.verbose``; bad input (:data:`EXPECTED_ERRORS`)
    ends in one line ``error: <message>`` and :data:`EXIT_INPUT_ERROR`."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(command(args) or 0)
    except Exception as exc:
        if not _is_expected(exc):
            raise
        if args.verbose >= 2:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


def _is_expected(exc: Exception) -> bool:
    """Whether ``exc`` is bad input (one of :data:`EXPECTED_ERRORS`), not a bug."""
    if isinstance(exc, _EXPECTED_OS_ERRORS):
        return True
    for item in EXPECTED_ERRORS:
        module_name, name = item.split(":")
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, name)):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
