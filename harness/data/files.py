"""Files in the data directory: finding them, explaining what is missing, downloading.

The data directory is ``load(..., data_dir=...)``, else ``$NFBENCH_DATA``, else
``~/.nfbench/data``. Each file-based data set names the files it needs relative to it (the
layouts of the original archives) and where they come from. A missing file is answered by
a :class:`DataError` that names every expected path and the source; with ``download=True``
the files are first fetched with the standard library's ``urllib`` from the original
sources (only then: never implicitly, never in tests) and written atomically (``*.part``
then rename).

Every downloaded file is checked against the digest its source publishes (a :class:`Digest`:
MD5 where that is what the source lists, as for MNIST, Fashion-MNIST, CIFAR-10 and the MAF
archive on Zenodo; SHA-256 where one is published) before it is kept: a file that does not
match is deleted and the next mirror tried; if none matches, a :class:`DataError` names the
file, each URL and both digests. A kept archive is checked again before files are extracted
from it, and only the named members are read from it (never ``extractall``).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import DATA_ENV
from .errors import DataError

__all__ = ["Archive", "Digest", "Source", "corrupt", "fetch_url", "require"]

TIMEOUT_S = 60.0
CHUNK = 1 << 20
_HEX_LENGTH = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class Digest:
    """A published digest of a file: ``algorithm`` (``md5`` or ``sha256``, as the source
    publishes it) and its lower-case hex value."""

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        size = _HEX_LENGTH.get(self.algorithm)
        if size is None:
            raise ValueError(f"Digest: algorithm must be one of {sorted(_HEX_LENGTH)}, "
                             f"got {self.algorithm!r}")
        value = self.hexdigest
        if len(value) != size or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"Digest: a {self.algorithm} digest is {size} lower-case hex "
                             f"digits, got {value!r}")

    def of(self, path: Path) -> str:
        """The hex digest of the file at ``path`` with this digest's algorithm."""
        h = hashlib.new(self.algorithm, usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def mismatch(self, path: Path) -> str | None:
        """None when the file at ``path`` has this digest, else what it has instead."""
        actual = self.of(path)
        if actual == self.hexdigest:
            return None
        return f"{self.algorithm} {actual}, expected {self.hexdigest}"


@dataclass(frozen=True)
class Archive:
    """A ``.tar.gz`` at ``urls`` (mirrors, tried in order), kept as ``data_dir / keep_as``;
    ``members`` maps archive member → path relative to the data directory; ``digest`` is the
    archive's published digest."""

    urls: tuple[str, ...]
    keep_as: str
    members: dict[str, str]
    digest: Digest


@dataclass(frozen=True)
class Source:
    """Where a data set's files come from.

    Attributes:
        files: paths relative to the data directory that the loader reads.
        where: the source in words (paper, page), shown in errors.
        direct: file → mirror URLs, fetched one by one.
        digests: file → its published digest (every file in ``direct`` needs one).
        archive: or an archive holding the files.
    """

    files: tuple[str, ...]
    where: str
    direct: dict[str, tuple[str, ...]] = field(default_factory=dict)
    digests: dict[str, Digest] = field(default_factory=dict)
    archive: Archive | None = None

    def __post_init__(self) -> None:
        unchecked = sorted(set(self.direct) - set(self.digests))
        if unchecked:
            raise ValueError(f"Source: no published digest for {unchecked}; every "
                             "downloaded file is checked")

    def urls(self) -> list[str]:
        if self.archive is not None:
            return list(self.archive.urls[:1])
        return [mirrors[0] for mirrors in self.direct.values()]


def fetch_url(urls: Sequence[str], dest: Path, digest: Digest) -> None:
    """Download the first URL that answers with a file of ``digest`` into ``dest``
    (atomically: ``*.part``, checked, then renamed); a file that does not match is deleted
    and the next URL tried.

    Raises:
        DataError: no URL gave a matching file (each URL's failure is named).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as f:
                shutil.copyfileobj(response, f, CHUNK)
            wrong = digest.mismatch(part)
        except OSError as err:  # URLError, HTTPError, timeouts are OSErrors
            errors.append(f"{url}: {err}")
            part.unlink(missing_ok=True)
            continue
        if wrong is None:
            part.replace(dest)
            return
        part.unlink(missing_ok=True)
        errors.append(f"{url}: checksum mismatch ({wrong}); the download was deleted")
    raise DataError(f"could not download {dest.name} into {dest.parent}: " + "; ".join(errors))


def _extract(archive: Archive, data_dir: Path, wanted: Sequence[str]) -> None:
    tar_path = data_dir / archive.keep_as
    if not tar_path.is_file():
        fetch_url(archive.urls, tar_path, archive.digest)
    else:
        wrong = archive.digest.mismatch(tar_path)
        if wrong is not None:
            raise DataError(f"{tar_path}: checksum mismatch ({wrong}): not the published "
                            f"archive ({archive.urls[0]}); delete it and load again with "
                            "download=True")
    by_dest = {dest: member for member, dest in archive.members.items()}
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for rel in wanted:
                member = by_dest.get(rel)
                if member is None:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    raise DataError(f"{tar_path}: member {member} is not a file")
                out = data_dir / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                part = out.with_name(out.name + ".part")
                with src, open(part, "wb") as f:
                    shutil.copyfileobj(src, f, CHUNK)
                part.replace(out)
    except (tarfile.TarError, KeyError, EOFError, OSError) as err:
        raise corrupt(tar_path, err, "delete it and load again with download=True") from None


def require(name: str, source: Source, data_dir: Path, download: bool) -> dict[str, Path]:
    """The paths of ``source.files`` under ``data_dir``, downloading them if allowed.

    Raises:
        DataError: files missing (naming each expected path, the source, and the fix).
    """
    paths = {rel: data_dir / rel for rel in source.files}
    missing = [rel for rel, p in paths.items() if not p.is_file()]
    if missing and download:
        if source.archive is not None:
            _extract(source.archive, data_dir, missing)
        else:
            for rel in missing:
                fetch_url(source.direct[rel], data_dir / rel, source.digests[rel])
        missing = [rel for rel, p in paths.items() if not p.is_file()]
    if missing:
        where = "\n".join(f"  {paths[rel]}" for rel in missing)
        exists = "" if data_dir.is_dir() else ", which does not exist"
        hint = "" if download else (
            f", or let nfbench fetch them: give the data set the option download: true in the "
            f"suite ({{name: {name}, download: true}}; in Python, load(..., download=True))")
        raise DataError(
            f"data set '{name}': missing file(s) in the data directory {data_dir}{exists} "
            f"(from --data-dir, ${DATA_ENV} or ~/.nfbench/data):\n{where}\n"
            f"Get them from {source.where} ({', '.join(source.urls())}){hint}."
        )
    return paths


def corrupt(path: Path, err: BaseException | str, fix: str = "") -> DataError:
    """A DataError naming a file that could not be read."""
    fix = fix or "delete it and download it again (load with download=True)"
    return DataError(
        f"{path}: cannot be read as expected ({err}); the file looks corrupt or truncated: {fix}"
    )
