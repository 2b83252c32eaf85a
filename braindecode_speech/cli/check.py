"""``braindecode-speech check``: validate a local copy of a study and list every problem."""

from __future__ import annotations

import argparse

HELP = "validate a local copy of a study: subjects, recordings, hours, words, all problems"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.studies import names

    parser.add_argument("--study", required=True, choices=names(), help="registered study name")
    parser.add_argument("--data", required=True, help="folder of the local copy")
    parser.add_argument("--subjects", nargs="+", default=None,
                        help="subject ids to check (default: all those the paper uses)")
    parser.add_argument("--no-signal", action="store_true",
                        help="do not read the whole signal (skips the NaN scan)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="adapter argument, e.g. selection=all (value parsed as YAML)")


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..config import ConfigError
    from ..data.studies.check import check

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r} is not of the form KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--option {item!r}: the value is not valid YAML "
                              f"({getattr(exc, 'problem', None) or exc})") from None
    report = check(args.study, args.data, subjects=args.subjects,
                   scan_signal=not args.no_signal, progress=True, **options)
    print(report.format())
    return 0 if report.ok else 1
