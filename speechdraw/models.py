"""Model names -> release directories: the registry, the user cache, downloads and safe unpacking of release archives.

Whatever `--model` (or `speechdraw.load_model`) is given resolves to a release directory:

    a release directory       used as it is (RUN/release, as written by training or export)
    a release archive         NAME.tar.gz written by recipes/*/export.py --archive: unpacked into the cache once
    a URL of such an archive  https://, http://, file://; downloaded and unpacked into the cache once
                              (`URL#sha256=HEX` pins its checksum, as pip does)
    a NAME                    looked up, in order, in
                                1. $SPEECHDRAW_MODELS/NAME/         a directory of your own releases
                                2. the user cache, ~/.cache/speechdraw/models/NAME/ (honours $XDG_CACHE_HOME)
                                3. the models shipped with the project: an archive listed in models/registry.json and
                                   stored beside it (unpacked into the cache on first use), or one the registry gives
                                   a URL for (downloaded into the cache on first use)

The registry (models/registry.json at the repository root; $SPEECHDRAW_REGISTRY names another file) lists each known
model: name, kind (asr / draw), description, what it was trained on, its measured figures, its archive (a path beside
the registry or a URL), sha256 and size; and the default name of each kind.

Pulling downloads to <cache>/.downloads/ (progress bar, timeout, retries, resuming a partial file where the server
honours Range), checks the size and sha256, unpacks into a temporary directory beside the target after checking every
member (no absolute paths, no `..`, no links or devices; tarfile's "data" filter on top), checks the release's kind,
then renames it into place. Any failure raises ModelError (one line) and leaves the installed models as they were.

This module imports no torch: `speechdraw models list` stays fast.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"  # shipped models: outside the package, see registry
KINDS = {"asr": "speech", "draw": "DRAW"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
SOURCE_FILE = ".source.json"  # written into each unpacked release: where it came from, its archive's sha256
MAX_UNPACKED_BYTES = 4 << 30  # refuse archives that claim more than 4 GiB of content
CHUNK = 1 << 16


class ModelError(ValueError):
    """A model that cannot be found, fetched, unpacked or used; the message is one line naming it and the reason."""


# ------------------------------------------------------------------------------------------------------ locations


def env_dir() -> Path | None:
    value = os.environ.get("SPEECHDRAW_MODELS")
    return Path(value).expanduser() if value else None


def user_cache() -> Path:
    """~/.cache/speechdraw (honours $XDG_CACHE_HOME): unpacked models, and anything else worth computing once."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "speechdraw"


def cache_dir() -> Path:
    return user_cache() / "models"


def registry_path() -> Path:
    value = os.environ.get("SPEECHDRAW_REGISTRY")
    return Path(value).expanduser() if value else REPO_MODELS / "registry.json"


# ------------------------------------------------------------------------------------------------------ registry


@dataclass
class Entry:
    """One model of the registry (models/registry.json)."""

    name: str
    kind: str  # "asr" or "draw"
    description: str = ""
    trained_on: str = ""
    headline: str = ""  # the one figure `models list` shows, e.g. "test WER 4.52% (beam + word 4-gram)"
    figures: dict = field(default_factory=dict)  # measured figures by name, with their records
    licence: str = ""  # of the training data
    shipped: str = ""  # archive path relative to the registry file ("" = not shipped)
    url: str = ""  # archive URL ("" = none)
    sha256: str = ""
    size: int = 0  # archive bytes

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, {}) or k in ("name", "kind")}


@dataclass
class Registry:
    path: Path
    models: dict[str, Entry]
    defaults: dict[str, str]  # kind -> default name

    def get(self, name: str) -> Entry | None:
        return self.models.get(name)

    def shipped_archive(self, entry: Entry) -> Path | None:
        return (self.path.parent / entry.shipped) if entry.shipped else None


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        return Registry(path, {}, {})
    try:
        data = json.loads(path.read_text())
        models = {}
        for item in data.get("models", []):
            entry = Entry(**item)
            if not NAME_RE.match(entry.name) or entry.kind not in KINDS:
                raise ValueError(f"bad name or kind in {item}")
            if entry.shipped and (os.path.isabs(entry.shipped) or ".." in PurePosixPath(entry.shipped).parts):
                raise ValueError(f"{entry.name}: shipped path {entry.shipped!r} must stay beside the registry")
            models[entry.name] = entry
        defaults = dict(data.get("defaults", {}))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"{path}: not a valid model registry ({e})") from e
    return Registry(path, models, defaults)


def default_name(kind: str, registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    return registry.defaults.get(kind, {"asr": "asr-en-synth", "draw": "draw-mnist"}[kind])


# ------------------------------------------------------------------------------------------------------ resolving


def is_url(spec: str) -> bool:
    return spec.startswith(("https://", "http://", "file://"))


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def release_kind(release_dir: Path) -> str | None:
    try:
        return json.loads((release_dir / "config.json").read_text()).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _check_kind(release_dir: Path, kind: str | None, what: str) -> Path:
    found = release_kind(release_dir)
    if found is None:
        raise ModelError(f"{what}: {release_dir} is not a speechdraw release (no readable config.json)")
    if kind is not None and found != kind:
        raise ModelError(f"{what}: this is a {KINDS.get(found, found)} model ({found!r}), but a {KINDS[kind]} model "
                         f"({kind!r}) is needed")
    return release_dir


def find_installed(name: str) -> tuple[Path, str] | None:
    """(release directory, where: "env" or "cache") of an installed model, or None."""
    for where, base in (("env", env_dir()), ("cache", cache_dir())):
        if base is not None and (base / name / "config.json").is_file():
            return base / name, where
    return None


def resolve_model(spec: str | os.PathLike | None, *, kind: str | None = None, progress: bool = True) -> Path:
    """A release directory, archive, URL or name (None: the default of `kind`) -> a release directory.

    Names and archives are checked to hold a model of `kind`; an existing directory is returned as it is (its loader
    checks it, as before names existed)."""
    registry = load_registry()
    if spec is None:
        if kind is None:
            raise ModelError("no model given")
        name = default_name(kind, registry)
        try:
            return resolve_model(name, kind=kind, progress=progress)
        except ModelError as e:
            raise ModelError(f"no --model given and the default {KINDS[kind]} model is not available ({e}). "
                             f"Train one (recipes/{kind}/README.md) and pass --model RUN/release, put a release in "
                             f"$SPEECHDRAW_MODELS/{name}/, or `speechdraw models pull URL|FILE --name {name}`") from e
    spec = str(spec)
    if is_url(spec):
        installed = _installed_from(source=_strip_fragment(spec))
        return _check_kind(installed or pull(spec, kind=kind, progress=progress), kind, spec)
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.name in ("config.json", "model.pt", "model.safetensors")):
        return path
    if path.is_file() and is_archive(path):
        installed = _installed_from(sha256=file_sha256(path))
        return _check_kind(installed or pull(str(path), kind=kind, progress=progress), kind, spec)
    if not NAME_RE.match(spec) or os.sep in spec:
        raise ModelError(f"{spec}: no such model (no release directory or archive there, and not a model name)")
    found = find_installed(spec)
    entry = registry.get(spec)
    if found is not None:
        release, where = found
        if where == "cache" and entry is not None and entry.shipped and _is_stale(release, entry):
            return _check_kind(pull(spec, kind=kind, progress=progress), kind, spec)  # a newer shipped archive
        return _check_kind(release, kind, spec)
    if entry is None:
        known = ", ".join(sorted(registry.models)) or "none yet"
        raise ModelError(f"{spec}: no such model name, release directory or archive (known names: {known}; "
                         f"`speechdraw models list`)")
    if kind is not None and entry.kind != kind:
        raise ModelError(f"{spec}: this is a {KINDS[entry.kind]} model ({entry.kind!r}), but a {KINDS[kind]} model "
                         f"({kind!r}) is needed")
    return _check_kind(pull(spec, kind=kind, progress=progress), kind, spec)


def _is_stale(release: Path, entry: Entry) -> bool:
    source = read_source(release)
    return bool(entry.sha256 and source.get("name") == entry.name and source.get("sha256")
                and source["sha256"] != entry.sha256)


def read_source(release: Path) -> dict:
    try:
        return json.loads((release / SOURCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _installed_from(*, source: str | None = None, sha256: str | None = None) -> Path | None:
    """The cached release unpacked from this URL or from an archive with this sha256, if any."""
    base = cache_dir()
    if not base.is_dir():
        return None
    for d in sorted(base.iterdir()):
        if d.name.startswith(".") or not (d / "config.json").is_file():
            continue
        info = read_source(d)
        if (source is not None and info.get("source") == source) or (sha256 and info.get("sha256") == sha256):
            return d
    return None


# ------------------------------------------------------------------------------------------------------ pulling


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strip_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _url_sha256(url: str) -> str:
    frag = urllib.parse.urlsplit(url).fragment
    m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", frag)
    return m.group(1).lower() if m else ""


def pull(spec: str, *, name: str | None = None, kind: str | None = None, sha256: str | None = None,
         progress: bool = True, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0) -> Path:
    """Fetch a model by registry NAME, URL or archive FILE into the cache; returns its release directory.

    The archive's size and sha256 are checked against the registry (or `sha256`, or a URL's #sha256= fragment), its
    members are checked before anything is unpacked, and the release must be of `kind` (and of the registry's kind).
    On any failure the installed models are left as they were."""
    registry = load_registry()
    expected_size = 0
    entry = registry.get(spec) if NAME_RE.match(spec) and not os.path.exists(spec) else None
    if entry is not None:
        if kind is not None and entry.kind != kind:
            raise ModelError(f"{spec}: this is a {KINDS[entry.kind]} model ({entry.kind!r}), but a {KINDS[kind]} "
                             f"model ({kind!r}) is needed")
        kind, name = entry.kind, name or entry.name
        sha256, expected_size = sha256 or entry.sha256, entry.size
        shipped = registry.shipped_archive(entry)
        if shipped is not None and shipped.is_file():
            source, local = str(shipped), shipped
        elif entry.url:
            source, local = _strip_fragment(entry.url), None
            sha256 = sha256 or _url_sha256(entry.url)
        else:
            where = f"{shipped} is missing" if shipped is not None else "it has neither a shipped archive nor a URL"
            raise ModelError(f"{spec}: the registry lists this model but {where}")
    elif is_url(spec):
        sha256 = sha256 or _url_sha256(spec)
        source = _strip_fragment(spec)
        local = Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path)) \
            if source.startswith("file://") else None
    elif os.path.exists(spec):
        source, local = str(Path(spec).resolve()), Path(spec)
        if not local.is_file():
            raise ModelError(f"{spec}: a directory is used in place (--model DIR); pull takes a NAME, URL or archive")
    else:
        raise ModelError(f"{spec}: no such model name, URL or archive file (`speechdraw models list`)")
    if name is not None and not NAME_RE.match(name):
        raise ModelError(f"{name!r}: a model name is lower-case letters, digits, '.', '_' and '-'")

    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if local is not None:
        if not local.is_file():
            raise ModelError(f"{local}: no such archive file")
        archive, downloaded = local, False
    else:
        archive, downloaded = _download(source, cache / ".downloads", progress=progress, timeout=timeout,
                                        retries=retries, backoff=backoff, expected_size=expected_size), True
    try:
        size = archive.stat().st_size
        if expected_size and size != expected_size:
            raise ModelError(f"{source}: {size} bytes, but the registry says {expected_size}: truncated or a "
                             f"different file")
        digest = file_sha256(archive)
        if sha256 and digest != sha256.lower():
            raise ModelError(f"{source}: sha256 {digest} does not match the expected {sha256.lower()}: corrupt or "
                             f"tampered download; nothing was installed")
        return unpack(archive, cache, name=name, kind=kind, source={"source": source, "sha256": digest,
                                                                     "size": size, "registry_name": spec
                                                                     if entry is not None else None})
    finally:
        if downloaded:
            archive.unlink(missing_ok=True)
            Path(str(archive) + ".json").unlink(missing_ok=True)


def _download(url: str, folder: Path, *, progress: bool, timeout: float, retries: int, backoff: float,
              expected_size: int = 0) -> Path:
    """Download `url` to folder/<hash of url>.part, resuming a partial file from an earlier try or run where the server
    honours Range (If-Range guards against the file having changed since). Returns the complete file."""
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    part = folder / f"{key}.part"
    meta_path = Path(str(part) + ".json")
    meta = {}
    if part.exists() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            meta = {}
    if meta.get("url") != url:
        part.unlink(missing_ok=True)
        meta = {"url": url}
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "speechdraw"})
        if have:
            req.add_header("Range", f"bytes={have}-")
            if meta.get("validator"):
                req.add_header("If-Range", meta["validator"])
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if resp.status == 206:
                    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != have:
                        raise ModelError(f"{url}: the server answered a range request with the wrong range")
                    mode, start = "ab", have
                else:  # 200: the whole file (no Range support, or it changed): start again
                    mode, start = "wb", 0
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else (expected_size or None)
                meta["validator"] = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
                meta_path.write_text(json.dumps(meta))
                got = start
                bar = _progress_bar(total, start, url, progress)
                try:
                    with open(part, mode) as f:
                        while True:
                            block = resp.read(CHUNK)
                            if not block:
                                break
                            f.write(block)
                            got += len(block)
                            bar.update(len(block))
                finally:
                    bar.close()
                if total is not None and got < total:
                    raise http.client.IncompleteRead(b"", total - got)
            if expected_size and got > expected_size:
                part.unlink(missing_ok=True)
                raise ModelError(f"{url}: {got} bytes, more than the registry's {expected_size}: a different file")
            return part
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # asked past the end: the partial file is stale, start again
                part.unlink(missing_ok=True)
                last_error = "HTTP 416 on resume"
                continue
            if e.code in (408, 429) or e.code >= 500:
                last_error = f"HTTP {e.code} {e.reason}"
                continue
            raise ModelError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (http.client.HTTPException, OSError) as e:  # OSError: URLError, timeouts, resets
            if isinstance(e, http.client.IncompleteRead):
                last_error = f"connection closed with {e.expected} bytes still to come"
            else:
                last_error = str(getattr(e, "reason", e)) or type(e).__name__
    raise ModelError(f"{url}: download failed after {retries + 1} tries ({last_error}); the partial file is kept and "
                     f"the next pull resumes it")


def _progress_bar(total, initial, url, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                desc=Path(urllib.parse.urlsplit(url).path).name or "download",
                disable=None if enabled else True, leave=False)


# ------------------------------------------------------------------------------------------------------ unpacking


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members, total = [], 0
    for m in tar.getmembers():  # reads the whole archive: a truncated one fails here, before anything is written
        p = PurePosixPath(m.name)
        if m.name.startswith(("/", "\\")) or p.is_absolute() or re.match(r"^[A-Za-z]:", m.name):
            raise ModelError(f"{archive}: refused: member {m.name!r} has an absolute path")
        if ".." in p.parts or "\\" in m.name:
            raise ModelError(f"{archive}: refused: member {m.name!r} points outside the archive ('..')")
        if not (m.isfile() or m.isdir()):
            what = "link" if (m.issym() or m.islnk()) else "device or special file"
            raise ModelError(f"{archive}: refused: member {m.name!r} is a {what}; release archives hold only files "
                             f"and directories")
        total += m.size
        members.append(m)
    if total > MAX_UNPACKED_BYTES:
        raise ModelError(f"{archive}: refused: it unpacks to {total} bytes (more than {MAX_UNPACKED_BYTES})")
    return members


def unpack(archive: str | os.PathLike, cache: str | os.PathLike, *, name: str | None = None, kind: str | None = None,
           source: dict | None = None) -> Path:
    """Check and unpack a release archive into cache/<name>/ atomically; returns that directory.

    The archive holds one release directory (NAME/config.json, weights, ...) or a release at its top. `name` defaults
    to card.json's name, else the top directory's, else the file name without .tar.gz."""
    archive, cache = Path(archive), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _checked_members(tar, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python without the extraction filters: the member checks above are the guard
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ModelError(f"{archive}: truncated or corrupt archive ({e}); nothing was installed") from e
        root = tmp
        if not (root / "config.json").is_file():
            tops = [p for p in tmp.iterdir()]
            if len(tops) == 1 and (tops[0] / "config.json").is_file():
                root = tops[0]
            else:
                raise ModelError(f"{archive}: not a speechdraw release archive (no config.json at its top or in its "
                                 f"one directory)")
        card = {}
        if (root / "card.json").is_file():
            try:
                card = json.loads((root / "card.json").read_text())
            except json.JSONDecodeError as e:
                raise ModelError(f"{archive}: card.json is not valid JSON ({e})") from e
        if name is None:
            name = card.get("name") or (root.name if root != tmp else None) or _archive_stem(archive)
        if not NAME_RE.match(str(name)):
            raise ModelError(f"{archive}: {name!r} is not a valid model name; pass --name")
        found = release_kind(root)
        if found not in KINDS:
            raise ModelError(f"{archive}: config.json names no known model kind ({found!r})")
        if kind is not None and found != kind:
            raise ModelError(f"{archive}: this is a {KINDS[found]} model ({found!r}), but a {KINDS[kind]} model "
                             f"({kind!r}) was expected; nothing was installed")
        if not any((root / w).is_file() for w in ("model.safetensors", "model.pt")):
            raise ModelError(f"{archive}: the release has no weights (model.safetensors or model.pt)")
        info = {"name": name, **(source or {"source": str(archive.resolve()), "sha256": file_sha256(archive)})}
        (root / SOURCE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        target = cache / name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=cache))
            os.replace(target, old / name)
        os.replace(root, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def remove(name: str) -> Path:
    """Delete cache/<name>/ (not $SPEECHDRAW_MODELS, not the shipped archives)."""
    if not NAME_RE.match(name):
        raise ModelError(f"{name!r}: not a model name")
    target = cache_dir() / name
    if not (target / "config.json").is_file():
        raise ModelError(f"{name}: not in the cache ({cache_dir()})")
    trash = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=cache_dir()))
    os.replace(target, trash / name)  # gone from the cache at once, even if deleting the files takes a while
    shutil.rmtree(trash, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------------------ cards


def read_card(release: Path) -> dict:
    try:
        return json.loads((release / "card.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


@dataclass
class Listed:
    name: str
    kind: str
    size: int  # archive bytes (registry) or bytes on disk (installed)
    where: str  # "env", "cache", "shipped" (archive present, not unpacked yet), "url" (downloadable), "" (neither)
    path: Path | None
    headline: str
    entry: Entry | None


def list_models() -> list[Listed]:
    """Every registry model and every installed release, by name."""
    registry = load_registry()
    names = set(registry.models)
    for base in (env_dir(), cache_dir()):
        if base is not None and base.is_dir():
            names |= {d.name for d in base.iterdir() if not d.name.startswith(".") and (d / "config.json").is_file()}
    out = []
    for name in sorted(names):
        entry = registry.get(name)
        found = find_installed(name)
        card = read_card(found[0]) if found else {}
        if found is not None:
            where, path = found[1], found[0]
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        else:
            archive = registry.shipped_archive(entry)
            where = "shipped" if archive is not None and archive.is_file() else ("url" if entry.url else "")
            path, size = None, entry.size
        kind = (release_kind(path) if path is not None else None) or (entry.kind if entry else "?")
        headline = (entry.headline if entry else "") or card.get("headline", "")
        out.append(Listed(name, kind, size, where, path, headline, entry))
    return out


def card_for(name: str) -> dict:
    """The whole model card: the installed release's card.json over the registry entry."""
    registry = load_registry()
    entry = registry.get(name)
    found = find_installed(name) if NAME_RE.match(name) else None
    if entry is None and found is None:
        raise ModelError(f"{name}: no such model (`speechdraw models list`)")
    card = dict(entry.to_dict()) if entry else {"name": name}
    if found is not None:
        card.update(read_card(found[0]))
        card["installed"] = str(found[0])
    return card


# ------------------------------------------------------------------------------------------------------ loading


def load_model(name_or_path: str | os.PathLike | None = None, *, kind: str | None = None, device="cpu"):
    """A model by name, release directory, archive or URL -> the loaded model of its kind: a
    speechdraw.asr.release.SpeechModel for "asr", a speechdraw.draw.model.Draw (eval mode) for "draw". With
    name_or_path None, the default model of `kind`."""
    path = resolve_model(name_or_path, kind=kind)
    release = path.parent if path.is_file() else path
    found = release_kind(release)
    if kind is not None and found != kind:
        _check_kind(release, kind, str(name_or_path))
    if found == "asr":
        from speechdraw.asr.release import load_speech_release

        return load_speech_release(release, device)
    if found == "draw":
        from speechdraw.draw.sample import load_draw

        return load_draw(release, device)[0]
    raise ModelError(f"{name_or_path}: {release} holds a {found!r} release, which load_model does not load")


# ------------------------------------------------------------------------------------------------------ exporting


def record_figures(path: str | os.PathLike, keys: dict[str, str]) -> dict:
    """Figures out of a bench/results record, each under a label: {"record": name, "file", "git_commit", "date",
    "figures": {label: value}}. `keys` maps a label to a dotted path into the record's "figures" (missing ones are
    left out, so a card never shows a figure its record does not hold)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not a readable benchmark record ({e})") from e
    figures = {}
    for label, dotted in keys.items():
        value = record.get("figures", {})
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            figures[label] = value
    return {"record": record.get("name", path.stem), "file": f"bench/results/{path.name}",
            "git_commit": record.get("git_commit", ""), "date": record.get("date", ""), "figures": figures}


def make_card(release_dir: str | os.PathLike, *, name: str, description: str, trained_on: str, has_seen: str,
              has_not_seen: str, licence: str, train_better: str, headline: str = "",
              records: list[dict] | None = None) -> dict:
    """The model card (card.json): what the model is, what it has and has not heard or seen, its measured figures
    with the records they come from, the metrics its release recorded in training, and how to train a better one."""
    release = Path(release_dir)
    config = json.loads((release / "config.json").read_text())
    from speechdraw import __version__

    return {
        "name": name, "kind": config.get("kind"), "description": description, "trained_on": trained_on,
        "has_seen": has_seen, "has_not_seen": has_not_seen, "licence": licence, "headline": headline,
        "model": config.get("model", {}), "training_metrics": config.get("metrics", {}),
        "results": records or [], "train_better": train_better,
        "release_git_commit": config.get("git_commit", ""), "speechdraw_version": __version__,
    }


def card_markdown(card: dict) -> str:
    """README.md of a release archive, from its card."""
    seen = "heard" if card.get("kind") == "asr" else "seen"
    lines = [f"# {card['name']}", "", card.get("description", ""), "",
             f"- kind: {card.get('kind')} ({KINDS.get(card.get('kind'), '?')})",
             f"- trained on: {card.get('trained_on', '')}",
             f"- has {seen}: {card.get('has_seen', '')}",
             f"- has not {seen}: {card.get('has_not_seen', '')}",
             f"- licence of its training data: {card.get('licence', '')}"]
    if card.get("headline"):
        lines.append(f"- headline: {card['headline']}")
    weights = card.get("weights", {})
    if weights:
        lines.append(f"- weights: {weights.get('file')} stored as {weights.get('stored_dtype')}, loaded as float32")
    lines += ["", "## Measured results", ""]
    if not card.get("results"):
        lines.append("No benchmark record was attached to this export.")
    for r in card.get("results", []):
        lines.append(f"From record `{r['record']}` ({r['file']}, commit {r.get('git_commit', '')[:10]}, "
                     f"{r.get('date', '')}):")
        lines.append("")
        lines += [f"- {label}: {value}" for label, value in r["figures"].items()]
        lines.append("")
    if card.get("training_metrics"):
        lines += ["", "Recorded by training: " + ", ".join(f"{k} {v}" for k, v in card["training_metrics"].items()
                                                           if not isinstance(v, (dict, list)))]
    lines += ["", "## Model", "", "```json", json.dumps(card.get("model", {}), indent=2), "```", "",
              "## Training a better one", "", card.get("train_better", ""), ""]
    return "\n".join(lines)


def write_archive(release_dir: str | os.PathLike, out: str | os.PathLike, card: dict, *,
                  dtype: str = "float16") -> Entry:
    """A release directory -> a release archive `out` (NAME.tar.gz, one top directory NAME/): every file of the
    release, each model.pt (the release's and rnnlm/'s) rewritten as model.safetensors with floating tensors stored
    in `dtype` (float16 or bfloat16; loaded back as float32), card.json and README.md. The archive is reproducible
    (sorted members, fixed times and owners) and written atomically. Returns its registry entry (sha256, size)."""
    import torch
    from safetensors.torch import save_file

    from speechdraw.engine.release import load_weights

    store = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if store is None:
        raise ModelError(f"dtype must be float16 or bfloat16, got {dtype!r}")
    release, out = Path(release_dir), Path(out)
    name = card["name"]
    if not NAME_RE.match(name):
        raise ModelError(f"{name!r}: a model name is lower-case letters, digits, '.', '_' and '-'")
    if not (release / "config.json").is_file():
        raise ModelError(f"{release}: not a release directory (no config.json)")
    card = {**card, "weights": {"file": "model.safetensors", "stored_dtype": dtype}}
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / name
        shutil.copytree(release, top, ignore=shutil.ignore_patterns("*.tmp", SOURCE_FILE, "card.json", "README.md"))
        for pt in sorted(top.rglob("model.pt")):
            sd = load_weights(pt)
            compact = {k: (v.to(store) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
            save_file(compact, str(pt.with_suffix(".safetensors")), metadata={"stored_dtype": dtype})
            pt.unlink()
        (top / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (top / "README.md").write_text(card_markdown(card))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".tmp")
        with open(partial, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path in [top, *sorted(top.rglob("*"))]:
                    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(tmp)))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    info.mode = 0o755 if path.is_dir() else 0o644
                    if path.is_file():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
        os.replace(partial, out)
    return Entry(name=name, kind=card.get("kind", ""), description=card.get("description", ""),
                 trained_on=card.get("trained_on", ""), headline=card.get("headline", ""),
                 figures={r["record"]: r["figures"] for r in card.get("results", [])}, licence=card.get("licence", ""),
                 shipped=str(out.resolve()), sha256=file_sha256(out), size=out.stat().st_size)


def add_to_registry(registry: str | os.PathLike, entry: Entry) -> Path:
    """Add `entry` to a registry file (replacing one of the same name), written atomically. Its `shipped` path is made
    relative to the registry when the archive lies beside it (or below); otherwise it is dropped (give a URL)."""
    registry = Path(registry)
    data = json.loads(registry.read_text()) if registry.is_file() else {"format_version": 1, "defaults": {},
                                                                         "models": []}
    item = entry.to_dict()
    if entry.shipped:
        archive = Path(entry.shipped).resolve()
        try:
            item["shipped"] = archive.relative_to(registry.resolve().parent).as_posix()
        except ValueError:
            item.pop("shipped")
    data["models"] = [m for m in data.get("models", []) if m.get("name") != entry.name] + [item]
    data["models"].sort(key=lambda m: m["name"])
    tmp = registry.with_name(registry.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, registry)
    return registry


# ---------------------------------------------------------------------------------------------- export scripts' options


def add_archive_arguments(ap, card: dict) -> None:
    """The --archive options of recipes/*/export.py; `card` gives each recipe's default card texts."""
    g = ap.add_argument_group("release archive (a model to share or ship: compact weights + model card)")
    g.add_argument("--archive", default=None, help="also write this release archive, NAME.tar.gz (default: none)")
    g.add_argument("--name", default=card["name"], help=f"model name in the archive (default: {card['name']})")
    g.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16",
                   help="stored precision of the weights; loaded as float32 (default: float16)")
    g.add_argument("--record", action="append", default=[], metavar="JSON",
                   help="bench/results record measured on this model, for the card's figures (repeatable)")
    g.add_argument("--headline", default=None, help="the one figure `models list` shows (default: from the records)")
    g.add_argument("--registry", default=None, help="add the archive's entry (sha256, size, figures) to this "
                                                   "registry file, e.g. models/registry.json (default: print it)")
    g.add_argument("--url", default="", help="where the archive will be downloadable, for the registry entry")
    for key, help_text in (("description", "one sentence"), ("trained_on", "the training data"),
                           ("has_seen", "what the model has heard/seen"),
                           ("has_not_seen", "what it has not heard/seen"),
                           ("licence", "licence of the training data"), ("train_better", "how to train a better one")):
        g.add_argument("--" + key.replace("_", "-"), dest=key, default=card[key],
                       help=f"card: {help_text} (default: the recipe's text)")


def archive_from_args(args, release_dir: str | os.PathLike, figure_keys: dict[str, dict[str, str]],
                      headline=None) -> Entry:
    """Write the archive the --archive options ask for. `figure_keys` maps a record name to {label: dotted key};
    `headline(records)` makes the default headline from the records' figures."""
    records = []
    for path in args.record:
        if not Path(path).is_file():
            raise ModelError(f"{path}: no such benchmark record")
        name = record_figures(path, {})["record"]
        if name not in figure_keys:
            raise ModelError(f"{path}: record {name!r} is not one this recipe takes figures from "
                             f"({', '.join(figure_keys)})")
        records.append(record_figures(path, figure_keys[name]))
    card = make_card(release_dir, name=args.name, description=args.description, trained_on=args.trained_on,
                     has_seen=args.has_seen, has_not_seen=args.has_not_seen, licence=args.licence,
                     train_better=args.train_better, records=records,
                     headline=args.headline if args.headline is not None else (headline(records) if headline else ""))
    entry = write_archive(release_dir, args.archive, card, dtype=args.dtype)
    entry.url = args.url
    if args.registry:
        add_to_registry(args.registry, entry)
        print(f"registry {args.registry}: entry {entry.name} added")
    else:
        print(json.dumps({**entry.to_dict(), "shipped": Path(entry.shipped).name}, indent=2))
    print(f"wrote {args.archive} ({entry.size / 1e6:.2f} MB, sha256 {entry.sha256}, weights {args.dtype})")
    return entry
