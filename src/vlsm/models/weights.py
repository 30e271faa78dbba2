"""One resolver for every model's pretrained weights.

A weight *source* is one of

* a local folder (``/data/weights/clipseg-rd64-refined``, ``~/w/biomedclip``),
* a Hugging Face hub id, with or without the ``hf-hub:`` prefix
  (``CIDAS/clipseg-rd64-refined``, ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).

Hub ids are looked up in the local Hugging Face cache first (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
else ``~/.cache/huggingface/hub``). Only when a file is missing there and ``HF_HUB_OFFLINE`` is not
set is it downloaded with ``huggingface_hub``. When files are missing the resolver fails at once
with :class:`WeightsNotFoundError`, whose message names every file it looked for, where it looked,
and how to get them.

A model declares what it needs as :class:`FileSpec` groups: each group is satisfied by the first
of its alternative file names that exists (e.g. ``model.safetensors`` or ``pytorch_model.bin``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

HF_PREFIX = "hf-hub:"
_TRUE = {"1", "true", "yes", "on"}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights (or their config/tokenizer files) could not be found."""


@dataclass(frozen=True)
class FileSpec:
    """One needed file, given as alternative names (the first that exists wins)."""

    names: tuple
    required: bool = True
    what: str = ""

    @classmethod
    def of(cls, *names: str, required: bool = True, what: str = "") -> "FileSpec":
        return cls(tuple(names), required, what)

    def describe(self) -> str:
        alt = " or ".join(self.names)
        return f"{alt} ({self.what})" if self.what else alt


@dataclass
class ResolvedWeights:
    """Where the files of one weight source live on this machine."""

    source: str
    folder: Path
    files: dict = field(default_factory=dict)  # file name -> Path, for every file found

    def get(self, *names: str) -> Optional[Path]:
        """The path of the first of ``names`` that was found, else None."""
        for name in names:
            if name in self.files:
                return self.files[name]
        return None

    def path(self, *names: str) -> Path:
        found = self.get(*names)
        if found is None:
            raise WeightsNotFoundError(f"{' or '.join(names)} is missing from weight source {self.source!r} "
                                       f"({self.folder})")
        return found


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read at call time."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    return False


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, following the same environment variables as huggingface_hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def parse_source(source: str) -> tuple[str, str]:
    """``("local", path)`` or ``("hub", repo_id)`` for a weight source string."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a weight source must be a folder path or a hub id string, got {type(source).__name__}")
    text = os.fspath(source).strip()
    if not text:
        raise ValueError("empty weight source: give a local folder or a Hugging Face hub id such as "
                         "'CIDAS/clipseg-rd64-refined'")
    if text.startswith(HF_PREFIX):
        repo = text[len(HF_PREFIX):].strip("/")
        if repo.count("/") != 1:
            raise ValueError(f"bad hub id {text!r}: expected 'hf-hub:ORG/NAME'")
        return "hub", repo
    path = Path(text).expanduser()
    if path.exists():
        return "local", str(path)
    looks_like_path = (text.startswith(("/", ".", "~")) or text.count("/") != 1 or "\\" in text)
    if looks_like_path:
        raise WeightsNotFoundError(f"weight folder {text} does not exist. Give an existing folder with the "
                                   f"model's files, or a Hugging Face hub id such as 'ORG/NAME'.")
    return "hub", text


def _missing_message(source: str, where: str, missing: Sequence[FileSpec], model: str, hint: str) -> str:
    lines = [f"{model or 'model'} weights not found for source {source!r}.",
             f"Looked in: {where}",
             "Missing: " + "; ".join(spec.describe() for spec in missing)]
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def _how_to_get(repo: str) -> str:
    return (f"How to get them: on a machine with internet run\n"
            f"    hf download {repo}\n"
            f"(or `python -c \"from huggingface_hub import snapshot_download; snapshot_download('{repo}')\"`) "
            f"and copy the Hugging Face cache (~/.cache/huggingface/hub/models--{repo.replace('/', '--')}) to this "
            f"machine, or copy the downloaded files into a folder and pass that folder as the weight source.")


def resolve_weights(source: str, files: Sequence[FileSpec], *, model: str = "", hint: str = "",
                    cache_dir: Optional[str | Path] = None) -> ResolvedWeights:
    """Find the files of a weight source on this machine (downloading only hub files, and only online).

    Args:
        source: a local folder or a hub id (``ORG/NAME`` or ``hf-hub:ORG/NAME``).
        files: what the model needs; groups with ``required=False`` are fetched when available.
        model: the model's name, for messages.
        hint: extra advice appended to the error message.
        cache_dir: Hugging Face cache to read instead of the default one.
    Raises:
        WeightsNotFoundError: a required file is missing; the message names all missing files.
    """
    kind, where = parse_source(source)
    if kind == "local":
        folder = Path(where)
        if not folder.is_dir():
            raise WeightsNotFoundError(f"weight source {source!r} is a file, not a folder: pass the folder that "
                                       f"holds {', '.join(s.describe() for s in files if s.required)}")
        found, missing = {}, []
        for spec in files:
            name = next((n for n in spec.names if (folder / n).is_file()), None)
            if name is not None:
                found[name] = folder / name
            elif spec.required:
                missing.append(spec)
        if missing:
            present = sorted(p.name for p in folder.iterdir())[:20]
            raise WeightsNotFoundError(_missing_message(
                source, f"{folder} (it holds: {', '.join(present) or 'nothing'})", missing, model, hint))
        return ResolvedWeights(str(source), folder, found)
    return _resolve_hub(str(source), where, files, model=model, hint=hint, cache_dir=cache_dir)


def _resolve_hub(source: str, repo: str, files: Sequence[FileSpec], *, model: str, hint: str,
                 cache_dir: Optional[str | Path]) -> ResolvedWeights:
    from huggingface_hub import try_to_load_from_cache

    cache = Path(cache_dir).expanduser() if cache_dir is not None else hf_cache_dir()
    found: dict = {}
    unresolved: list[FileSpec] = []
    for spec in files:
        hit = None
        for name in spec.names:
            path = try_to_load_from_cache(repo, name, cache_dir=str(cache))
            if isinstance(path, str) and Path(path).is_file():
                hit = (name, Path(path))
                break
        if hit is not None:
            found[hit[0]] = hit[1]
        else:
            unresolved.append(spec)

    missing = [spec for spec in unresolved if spec.required]
    if unresolved and not offline_mode():
        missing = _download(repo, unresolved, found, cache)
    if missing:
        state = "HF_HUB_OFFLINE is set, so nothing was downloaded" if offline_mode() else \
            "the download failed (no internet access?)"
        raise WeightsNotFoundError(_missing_message(
            source, f"the Hugging Face cache {cache} ({state})", missing, model,
            "\n".join(x for x in (_how_to_get(repo), hint) if x)))
    folder = next(iter(found.values())).parent if found else cache
    return ResolvedWeights(source, folder, found)


def _download(repo: str, specs: Sequence[FileSpec], found: dict, cache: Path) -> list[FileSpec]:
    """Download what is missing from the hub; returns the required specs still missing."""
    from huggingface_hub import hf_hub_download

    still_missing = []
    for spec in specs:
        for name in spec.names:
            try:
                found[name] = Path(hf_hub_download(repo, name, cache_dir=str(cache)))
                break
            except Exception:  # noqa: BLE001 - any failure means "not available"; reported below
                continue
        else:
            if spec.required:
                still_missing.append(spec)
    return still_missing
