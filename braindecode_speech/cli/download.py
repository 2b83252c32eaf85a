"""``braindecode-speech download``: fetch an openly available study (resumable)."""

from __future__ import annotations

import argparse

HELP = ("download a public study (gwilliams2022, broderick2019, brennan2019, libribrain2025; "
        "MOUS, Armeni 2022: instructions)")

STUDIES = ("gwilliams2022", "schoffelen2019", "broderick2019", "brennan2019", "libribrain2025",
           "armeni2022")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, choices=STUDIES)
    parser.add_argument("--to", required=True, help="destination folder (created if needed)")
    parser.add_argument("--base-url", default=None,
                        help="replace the source's base URL (mirror or test server)")


def run(args: argparse.Namespace) -> int:
    from ..data.studies.download import DownloadError, download

    try:
        folder = download(args.study, args.to, base_url=args.base_url)
    except DownloadError as exc:
        print(exc)
        return 1
    print(f"{args.study} downloaded to {folder}")
    print(f"next: braindecode-speech check --study {args.study} --data {folder}")
    return 0
