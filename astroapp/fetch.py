"""`astroapp model fetch`: download a published weights file, on explicit request only.

Nothing in astroapp downloads at run time; this module is the one place that does, and only
when a user runs `astroapp model fetch NAME`. A download is checked against a pinned SHA-256
(or the torch-hub digest prefix in the published file name), continues an interrupted
transfer from its `.part` file with an HTTP Range request, and appears under its final name
in the data dir only once complete and verified. Retrieval models and matchers then find it
there (`find_weights`), beside files a user copied by hand.

The `.part` file cannot go through `astroapp.atomic.atomic_path`, which deletes its temporary
file on failure: here an interrupted transfer must survive to be resumed. The final step is
the same fsync + rename.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from astroapp import __version__, config
from astroapp.atomic import fsync_dir
from astroapp.digests import sha256_file
from astroapp.progress import Progress, ProgressFn, ignore

CHUNK = 1 << 16
UNVERIFIED = "third-party record, not yet checked against the file: the build machines are offline"


@dataclass(frozen=True)
class PublishedWeights:
    """A weights file published by its authors, and what in astroapp uses it."""

    name: str  # what `astroapp model fetch` takes
    filename: str  # the published file name, also its name in the data dir
    url: str
    used_by: str
    sha256: str | None = None  # full pinned digest
    sha256_prefix: str | None = None  # torch-hub naming: `<name>-<first hex digits>.pth`
    size: int | None = None  # bytes, where recorded
    provenance: str = ""  # where the digest comes from
    aliases: tuple[str, ...] = ()

    def digest_note(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}" + (f" ({self.provenance})" if self.provenance else "")
        if self.sha256_prefix:
            return f"sha256 starts with {self.sha256_prefix} ({self.provenance})"
        return "no digest pinned: `model fetch` needs --sha256 from the publisher"


_LIGHTGLUE = "https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/{}_lightglue.pth"

PUBLISHED: dict[str, PublishedWeights] = {
    w.name: w
    for w in (
        PublishedWeights(
            "earthloc",
            "earthloc-8b632e30.pth",
            "https://huggingface.co/torchgeo/earthloc/resolve/53a4bb90a7754b12f44986521ac7a711b4795959/"
            "earthloc-8b632e30.pth",
            "retrieval model 'earthloc' (torchgeo's port of EarthLoc's weights, MIT)",
            sha256_prefix="8b632e30",
            provenance="torch-hub file naming: the suffix is the first 8 hex digits of its sha256",
        ),
        PublishedWeights(
            "disk-lightglue",
            "disk_lightglue.pth",
            _LIGHTGLUE.format("disk"),
            "matcher 'lightglue-disk' (LightGlue for DISK features, Apache-2.0), with 'disk'",
            sha256="b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
            size=47_631_405,
            provenance=UNVERIFIED,
            aliases=("lightglue-disk",),
        ),
        PublishedWeights(
            "disk",
            "depth-save.pth",
            "https://raw.githubusercontent.com/cvlab-epfl/disk/master/depth-save.pth",
            "matcher 'lightglue-disk' (DISK 'depth' features, Apache-2.0), with 'disk-lightglue'",
            sha256="9c2ee4ded238892dfa51569941372601e35e4a74aa6f84ea80053d2ab1c07abe",
            size=4_375_832,
            provenance=UNVERIFIED,
            aliases=("disk-depth",),
        ),
        PublishedWeights(
            "sift-lightglue",
            "sift_lightglue.pth",
            _LIGHTGLUE.format("sift"),
            "matcher 'lightglue-sift' (LightGlue for SIFT features, Apache-2.0)",
            aliases=("lightglue-sift",),
        ),
        PublishedWeights(  # no digest is published beside these files: `model fetch` needs --sha256
            "dinov2-vits14",
            "dinov2_vits14_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
            "AstroLoc training (`model train astroloc --variant tiny --init-weights`): DINOv2 ViT-S/14 "
            "backbone, Apache-2.0",
        ),
        PublishedWeights(
            "dinov2-vitb14",
            "dinov2_vitb14_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            "AstroLoc training (`model train astroloc --variant base --init-weights`): DINOv2 ViT-B/14 "
            "backbone, Apache-2.0",
        ),
        PublishedWeights(
            "loftr-outdoor",
            "loftr_outdoor.ckpt",
            "https://huggingface.co/kornia/loftr/resolve/main/loftr_outdoor.ckpt",
            "matcher 'loftr' (LoFTR outdoor checkpoint, Apache-2.0)",
            aliases=("loftr",),
        ),
    )
}


class FetchError(RuntimeError):
    """A download failed or was refused; the message says what to do instead."""


def weights_home() -> Path:
    """Where `model fetch` installs files: <data dir>/models."""
    return config.data_dir() / "models"


def search_dirs() -> list[Path]:
    """Where a published file is looked for: the data dir first, then the app's models/."""
    return [weights_home(), config.MODELS_DIR, config.MODELS_DIR / "matchers" / "weights"]


def get_published(name: str) -> PublishedWeights:
    key = name.strip().lower()
    for w in PUBLISHED.values():
        if key == w.name or key in w.aliases:
            return w
    raise FetchError(f"no published weights named {name!r}; known: {', '.join(PUBLISHED)}")


def find_weights(name: str, extra_dirs: list[Path] | None = None) -> Path | None:
    """The installed file of a published weights entry, or None (never downloads)."""
    spec = get_published(name)
    for folder in [*(extra_dirs or []), *search_dirs()]:
        path = Path(folder) / spec.filename
        if path.is_file():
            return path
    return None


def how_to_get(name: str) -> str:
    """One line for error messages of the loaders: the fetch command and the manual route."""
    spec = get_published(name)
    return (f"`astroapp model fetch {spec.name}` (downloads {spec.url}), or download that file "
            f"by hand and put it at {weights_home() / spec.filename}")


def _check_digest(spec: PublishedWeights, digest: str, sha256: str | None) -> str | None:
    """None when `digest` is the expected one, else what was expected."""
    want = (sha256 or spec.sha256 or "").lower()
    if want:
        return None if digest == want else f"sha256 {want}"
    prefix = (spec.sha256_prefix or "").lower()
    return None if digest.startswith(prefix) else f"a sha256 starting with {prefix}"


def _offline_message(spec: PublishedWeights, url: str, dest: Path, reason: str) -> str:
    return (f"cannot download {spec.name} from {url}: {reason}\n"
            f"  astroapp downloads weights only on this command. On a machine with network access, "
            f"download {url}\n  and put the file at {dest} (or run again with --url MIRROR); "
            f"`astroapp model list` then shows it installed.")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"astroapp/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resume_offset(resp, offset: int) -> int:
    """Where the response's bytes start: `offset` for a matching 206, else 0 (a full body)."""
    if not offset or resp.status != 206:
        return 0
    content_range = resp.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return 0
    return offset if start == offset else 0


def _download(spec: PublishedWeights, url: str, part: Path, dest: Path, timeout: float,
              progress: ProgressFn) -> None:
    """Bring `part` up to the whole file, continuing what it already holds; a "download"
    event (bytes done of total, item the file name) after each block."""
    offset = part.stat().st_size if part.is_file() else 0
    if spec.size is not None and offset > spec.size:
        offset = 0  # not a prefix of this file: start again
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part already holds every byte
            return
        raise FetchError(_offline_message(spec, url, dest, f"HTTP {exc.code} {exc.reason}")) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(_offline_message(spec, url, dest, str(reason))) from exc
    with resp:
        offset = _resume_offset(resp, offset)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else spec.size
        done = offset
        with open(part, "ab" if offset else "wb") as fh:
            progress(Progress("download", done, total, item=spec.filename))
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(block)
                    done += len(block)
                    progress(Progress("download", done, total, item=spec.filename))
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise FetchError(
                    f"download of {spec.name} from {url} interrupted after {done} of "
                    f"{total if total else '?'} bytes ({type(exc).__name__}); the partial file "
                    f"{part} is kept: run the same command again to resume"
                ) from exc
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and done < total:
        raise FetchError(
            f"download of {spec.name} from {url} ended after {done} of {total} bytes; the partial "
            f"file {part} is kept: run the same command again to resume"
        )


def fetch(name: str | PublishedWeights, url: str | None = None, dest_dir: Path | None = None,
          sha256: str | None = None, progress: ProgressFn | None = None,
          timeout: float = 20.0) -> Path:
    """Download a published weights file into the data dir (or `dest_dir`) and verify it.

    `progress` gets "download" events (bytes done of total, `item` the file name; the CLI
    draws them).

    `url` replaces the published address (a mirror must serve the same bytes); `sha256`
    replaces the pinned digest (required where none is pinned). Returns the installed path;
    a file already installed with the right digest is not downloaded again.
    """
    spec = name if isinstance(name, PublishedWeights) else get_published(name)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise FetchError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    url = url or spec.url
    dest = Path(dest_dir) if dest_dir else weights_home()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.filename
    if not (sha256 or spec.sha256 or spec.sha256_prefix):
        raise FetchError(
            f"no digest is pinned for {spec.name} ({spec.filename}), so a download could not be "
            f"checked: pass --sha256 with the digest its publisher gives, or download {url} by "
            f"hand and put it at {target}"
        )
    if target.is_file() and _check_digest(spec, sha256_file(target), sha256) is None:
        return target
    part = target.with_name(target.name + ".part")
    _download(spec, url, part, target, timeout, progress or ignore)
    digest = sha256_file(part)
    wanted = _check_digest(spec, digest, sha256)
    if wanted is not None:
        part.unlink(missing_ok=True)
        raise FetchError(
            f"refused {spec.filename} from {url}: its sha256 is {digest}, expected {wanted}; "
            f"nothing was installed (the download was deleted). Check the URL (a mirror must serve "
            f"the published file) or pass --sha256 if you trust a different release."
        )
    os.replace(part, target)
    fsync_dir(target.parent)
    return target


__all__ = ["PUBLISHED", "FetchError", "PublishedWeights", "fetch", "find_weights", "get_published",
           "how_to_get", "search_dirs", "sha256_file", "weights_home"]
