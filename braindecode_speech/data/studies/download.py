"""Download the openly available studies: resumable, checksummed, atomic.

Sources (:data:`SOURCES`):

- ``gwilliams2022``: the ``osfstorage`` of OSF projects ``ag3kj``, ``h2tzn`` and ``u5327``
  merged into one folder (the BIDS root). Files are listed through the OSF API, which gives
  their size and SHA-256.
- ``broderick2019``: the Dryad dataset doi:10.5061/dryad.070jc (one zip, holding one zip per
  experiment; ``Natural Speech.zip`` is extracted). The audio is not public.
- ``brennan2019``: the 56 files of Deep Blue data set ``bg257f92t`` (names given by the server);
  ``audio.zip`` and ``proc.zip`` are extracted.
- ``schoffelen2019``: registration required; :data:`MOUS_INSTRUCTIONS` explains the steps.
- ``libribrain2025``: the Hugging Face dataset repository ``pnpl/LibriBrain`` through
  ``huggingface_hub.snapshot_download`` (:func:`download_libribrain`): the HDF5 recordings and
  events files only (``allow_patterns``), resumable (complete files are skipped, partial ones
  resumed). The audio is not in the release (see the ``libribrain2025`` adapter).
- ``armeni2022``: registration required; :data:`ARMENI_INSTRUCTIONS` explains the steps.

Each file is written to ``<name>.part`` and renamed when complete and verified; an
interrupted download resumes from the end of the ``.part`` file (HTTP ``Range``). A checksum
mismatch deletes the ``.part`` file and raises :class:`DownloadError`.
"""

from __future__ import annotations

import email.message
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

__all__ = ["DownloadError", "RemoteFile", "Source", "SOURCES", "MOUS_INSTRUCTIONS",
           "ARMENI_INSTRUCTIONS", "LIBRIBRAIN_REPOS", "download", "download_file",
           "download_libribrain", "osf_files"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT = 60.0


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and the file."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: ``url`` (absolute, or relative to its source's base URL), the path
    to write it to relative to the study folder (``None``: the name the server gives), and
    its size and checksums when known."""

    url: str
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a study comes from."""

    base_url: str
    files: tuple[RemoteFile, ...] = ()
    osf_nodes: tuple[str, ...] = ()
    extract: tuple[str, ...] = ()
    note: str = ""


_DEEP_BLUE_IDS = (
    "vm40xs661 t435gf09p 0v8381376 6h440t36j qv33rx36x 7w62f925w 5425kb76p g445cf216 df65v8733 "
    "41687j32q r207tq17h pn89d748r 41687j330 xg94hq37z fj2362955 1r66j195h j098zc06b 3n203z903 "
    "gx41mj79g mp48sd64h p2676w56p dn39x2566 pv63g1045 r207tq18s qr46r1659 wd375x18w td96k336b "
    "6q182m27b ms35t936k 02870w66d cj82k821x 9k41zf376 bk128b81j q524jp737 37720d60h ks65hd14w "
    "b5644s476 3t945r72w bn999773b 4t64gp10r qr46r166k h415pb60j sq87bv504 ht24wk29w p2676w57z "
    "2514nm49h 41687j348 tq57ns04w 4t64gp111 5712m736z f1881m88g 2b88qd012 2b88qd00s bn999775w "
    "h415pb59s q524jp72z").split()

MOUS_INSTRUCTIONS = """\
MOUS (Schoffelen et al. 2019) cannot be downloaded anonymously. To get it:
  1. Create an account on the Donders Repository (https://data.donders.ru.nl, now part of
     the Radboud Data Repository) and sign in.
  2. Open the collection DSC_3011020.09_236_v1 ("Mother of all unification studies"),
     accept its data use agreement and request access.
  3. Once access is granted, set a data-access (WebDAV) password in your profile.
  4. Download the collection over WebDAV, e.g.
       wget -r -np -nH --cut-dirs=1 -R "index.html*" -e robots=off --user=<user> \\
         --ask-password https://webdav.data.donders.ru.nl/dccn/DSC_3011020.09_236_v1/
     braindecode-speech needs sub-A*/ (auditory task), sourcedata/meg_task/*-MEG-MOUS-Aud.log
     and stimuli/.
  5. Word and phoneme timings (derivatives/phonemes/EQ_Ramp_Int2_Int1LPF<id>.TextGrid) are
     not part of the release: run WebMAUS (BAS web services, language nld-NL, output format
     TextGrid) on each stimuli/audio_files/*.wav with its text from stimuli/stimuli.txt and
     save the TextGrids under derivatives/phonemes/.
Then run: braindecode-speech check --study schoffelen2019 --data <folder>
"""

ARMENI_INSTRUCTIONS = """\
Armeni et al. 2022 (10 h of MEG x 3 people, Sherlock Holmes) cannot be downloaded anonymously.
To get it:
  1. Create an account on the Radboud Data Repository (https://data.ru.nl, formerly the Donders
     Repository) and sign in.
  2. Open the collection DSC_3011085.05_995_v1 ("Ten hours of MEG..."), accept its data use
     agreement and request access.
  3. Once access is granted, set a data-access (WebDAV) password in your profile and download
     the collection with a WebDAV client (or wget -r over the WebDAV address shown on the
     collection's page). braindecode-speech needs participants.tsv, sub-*/ses-*/meg/
     (*_task-compr_meg.ds and *_task-compr_events.tsv) and the stimulus wavs.
  4. Put the wavs named by the wav_onset events under <folder>/stimuli/ (or pass the adapter
     option audio_dir). The events.tsv schema the adapter reads is UNCONFIRMED against the
     real files: check reports what it cannot read.
Then run: braindecode-speech check --study armeni2022 --data <folder>
"""

#: Hugging Face dataset repositories of LibriBrain, tried in this order
LIBRIBRAIN_REPOS = ("pnpl/LibriBrain", "pnpl/LibriBrain-Competition-2025")
#: files of the LibriBrain release braindecode-speech reads
LIBRIBRAIN_PATTERNS = ("*/derivatives/serialised/*.h5", "*/derivatives/events/*_events.tsv")

SOURCES: dict[str, Source] = {
    "gwilliams2022": Source(
        base_url="https://api.osf.io/v2", osf_nodes=("ag3kj", "h2tzn", "u5327"),
        note="MEG-MASC (CC0), about 90 GB"),
    "broderick2019": Source(
        base_url="https://datadryad.org/api/v2/datasets/",
        files=(RemoteFile("doi%253A10.5061%252Fdryad.070jc/download",
                          "doi_10.5061_dryad.070jc.zip"),),
        extract=("doi_10.5061_dryad.070jc.zip", "Natural Speech.zip"),
        note="Natural Speech EEG (CC0); the audio is not public, see the broderick2019 "
             "adapter"),
    "brennan2019": Source(
        base_url="https://deepblue.lib.umich.edu/data/downloads/",
        files=tuple(RemoteFile(i) for i in _DEEP_BLUE_IDS),
        extract=("audio.zip", "proc.zip"),
        note="Alice in Wonderland EEG (CC BY 4.0), about 6 GB"),
}


def _checksums_of(path: Path) -> dict[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fid:
        while block := fid.read(CHUNK):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _verify(remote: RemoteFile, part: Path, target: Path) -> None:
    """Raise DownloadError (and delete ``part``) when the size or checksums of the downloaded
    data for ``target`` are wrong."""
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        part.unlink()
        raise DownloadError(f"{remote.url}: {target} has {size} bytes, expected {remote.size}; "
                            "the downloaded data were deleted, run again")
    if remote.sha256 is None and remote.md5 is None:
        return
    actual = _checksums_of(part)
    for kind in ("sha256", "md5"):
        expected = getattr(remote, kind)
        if expected is not None and actual[kind] != expected.lower():
            part.unlink()
            raise DownloadError(f"{remote.url}: {kind} checksum mismatch for {target} "
                                f"(expected {expected}, got {actual[kind]}); the downloaded "
                                "data were deleted, run again")


def _filename(headers: email.message.Message) -> str | None:
    name = headers.get_filename()
    return Path(name).name if name else None


def download_file(remote: RemoteFile, folder: Path, progress: bool = True,
                  names: dict[str, str] | None = None) -> Path:
    """Fetch one file into ``folder`` (resuming a ``.part`` file); return its path.

    ``names`` caches the server-given names of files with ``path=None`` (url → name), so
    that an interrupted download of such a file resumes too.
    """
    folder = Path(folder)
    name = remote.path or (names or {}).get(remote.url)
    target = folder / name if name else None
    if target is not None and target.exists():
        return target
    part = target.with_name(target.name + ".part") if target else None
    offset = part.stat().st_size if part is not None and part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "braindecode-speech"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and part is not None:  # the part file is already complete
            _verify(remote, part, target)
            os.replace(part, target)
            return target
        raise DownloadError(f"{remote.url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{remote.url}: {exc}") from None
    with response:
        if target is None:
            name = _filename(response.headers)
            if name is None:
                raise DownloadError(f"{remote.url}: the server gave no file name")
            if names is not None:
                names[remote.url] = name
            target = folder / name
            part = target.with_name(target.name + ".part")
            if target.exists():
                return target
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab" if offset else "wb") as fid, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=target.name,
                disable=not progress, leave=False) as bar:
            try:
                while block := response.read(CHUNK):
                    fid.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"{remote.url}: interrupted after {fid.tell()} bytes "
                                    f"({type(exc).__name__}); run again to resume") from None
            if total is not None and fid.tell() < total:
                raise DownloadError(f"{remote.url}: interrupted after {fid.tell()} bytes of "
                                    f"{total}; run again to resume")
    _verify(remote, part, target)
    os.replace(part, target)
    return target


def _get_json(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "braindecode-speech"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(f"{url}: cannot list files ({exc})") from None


def osf_files(node: str, api: str = "https://api.osf.io/v2") -> Iterator[RemoteFile]:
    """Every file of an OSF project's ``osfstorage`` (folders walked, pages followed), with
    its path, size and checksums."""
    pending = [f"{api.rstrip('/')}/nodes/{node}/files/osfstorage/"]
    while pending:
        url: str | None = pending.pop()
        while url:
            page = _get_json(url)
            for item in page.get("data", []):
                attributes = item["attributes"]
                if attributes["kind"] == "folder":
                    pending.append(item["relationships"]["files"]["links"]["related"]["href"])
                    continue
                hashes = (attributes.get("extra") or {}).get("hashes") or {}
                yield RemoteFile(url=item["links"]["download"],
                                 path=attributes["materialized_path"].lstrip("/"),
                                 size=attributes.get("size"), sha256=hashes.get("sha256"),
                                 md5=hashes.get("md5"))
            url = (page.get("links") or {}).get("next")


def _extract(archive: Path, folder: Path) -> None:
    """Extract a zip into ``folder`` once (a marker file records completion)."""
    marker = folder / f".{archive.name}.extracted"
    if marker.exists():
        return
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive to extract is missing")
    logger.info("extracting %s", archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip file ({exc})") from None
    marker.touch()


def download_libribrain(folder: str | Path, tasks: list[str] | None = None,
                        endpoint: str | None = None) -> Path:
    """LibriBrain's HDF5 recordings and events into ``folder`` (the adapter's root) with
    ``huggingface_hub.snapshot_download``: resumable, only :data:`LIBRIBRAIN_PATTERNS` (of the
    books ``tasks``, e.g. ``["Sherlock1"]``, when given), from the first of
    :data:`LIBRIBRAIN_REPOS` that exists (``huggingface_hub`` shows its own progress bars).

    Raises
    ------
    DownloadError : naming the repository when it cannot be reached or a transfer fails.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    patterns = [p.replace("*/", f"{t}/", 1) for t in tasks for p in LIBRIBRAIN_PATTERNS] \
        if tasks else list(LIBRIBRAIN_PATTERNS)
    for repo in LIBRIBRAIN_REPOS:
        try:
            snapshot_download(repo_id=repo, repo_type="dataset", local_dir=folder,
                              allow_patterns=patterns, endpoint=endpoint)
            return folder
        except RepositoryNotFoundError:
            logger.info("%s: no Hugging Face dataset repository %s", folder, repo)
        except Exception as exc:  # noqa: BLE001 - network and hub errors of many types
            raise DownloadError(f"huggingface.co/datasets/{repo}: {type(exc).__name__}: {exc} "
                                "(run again to resume)") from None
    raise DownloadError(f"none of the Hugging Face dataset repositories "
                        f"{', '.join(LIBRIBRAIN_REPOS)} was found")


def download(study: str, folder: str | Path, base_url: str | None = None,
             progress: bool = True) -> Path:
    """Download ``study`` into ``folder`` (resumable); return the folder to give to the
    adapter.

    Parameters
    ----------
    base_url : replaces the source's base URL (the OSF API root for ``gwilliams2022``, the
        Hugging Face endpoint for ``libribrain2025``), e.g. for a mirror or a test server.

    Raises
    ------
    DownloadError : the study cannot be downloaded automatically (MOUS, Armeni: the message
        holds :data:`MOUS_INSTRUCTIONS`, :data:`ARMENI_INSTRUCTIONS`), or a transfer or
        checksum failed.
    """
    if study == "schoffelen2019":
        raise DownloadError(MOUS_INSTRUCTIONS)
    if study == "armeni2022":
        raise DownloadError(ARMENI_INSTRUCTIONS)
    if study == "libribrain2025":
        return download_libribrain(folder, endpoint=base_url)
    if study not in SOURCES:
        raise DownloadError(f"no download source for {study!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[study]
    base = (base_url or source.base_url).rstrip("/") + "/"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names_path = folder / ".download-names.json"
    names = json.loads(names_path.read_text()) if names_path.exists() else {}
    files = [RemoteFile(base + f.url, f.path, f.size, f.sha256, f.md5) for f in source.files]
    for node in source.osf_nodes:
        files += list(osf_files(node, base))
    logger.info("%s: %d files to fetch into %s (%s)", study, len(files), folder, source.note)
    for remote in tqdm(files, desc=study, unit="file", disable=not progress):
        try:
            download_file(remote, folder, progress=progress, names=names)
        finally:
            names_path.write_text(json.dumps(names, indent=1))
    for archive in source.extract:
        _extract(folder / archive, folder)
    return folder
