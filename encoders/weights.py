"""Finding model files: an explicit path, ``CLAPDEX_WEIGHTS``, or the Hugging Face cache."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import urllib.parse
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

WEIGHTS_ENV = "CLAPDEX_WEIGHTS"
MSCLAP_REPO = "microsoft/msclap"
MSCLAP_2023_FILENAME = "CLAP_weights_2023.pth"
GPT2_TOKENIZER_REPO = "gpt2"
GPT2_TOKENIZER_FILES = ("vocab.json", "merges.txt")


class MissingWeightsError(FileNotFoundError):
    """Model files are neither where we were told nor obtainable from Hugging Face."""


HOW_TO_GET_WEIGHTS = f"""\
Get the MS-CLAP 2023 weights in one of these ways:
  * on a machine with network access, download them once into the Hugging Face cache:
      hf download {MSCLAP_REPO} {MSCLAP_2023_FILENAME}
      hf download {GPT2_TOKENIZER_REPO} {' '.join(GPT2_TOKENIZER_FILES)}
    later runs find them there, also offline (HF_HUB_OFFLINE=1; HF_HOME or HF_HUB_CACHE
    select the cache);
  * or pass --weights PATH (weights=PATH in Python), or set {WEIGHTS_ENV}=PATH, where PATH
    is {MSCLAP_2023_FILENAME} from https://huggingface.co/{MSCLAP_REPO}, with
    {' and '.join(GPT2_TOKENIZER_FILES)} of https://huggingface.co/{GPT2_TOKENIZER_REPO} next to it."""


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now, not only as it was when huggingface_hub was imported."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or value.strip().lower() in {"1", "true", "yes", "on"}


# Long enough for a slow link to answer, short enough that a machine without one learns so
# at once, rather than after huggingface_hub's five retries (about 25 s here).
HUB_PROBE_SECONDS = 3.0


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face endpoint cannot be reached from here, or None when it answers.

    One name lookup and one TCP connection, asked once per process."""
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS):
            return None
    except OSError as error:
        return f"{host} cannot be reached from this machine: {error.strerror or error}"


def _download(repo_id: str, filename: str, cache_dir: str | Path | None) -> Path:
    """``filename`` of ``repo_id`` from the Hugging Face cache, else from the hub."""
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OSError):
        pass
    why = "offline mode is on and it is not in the cache" if hub_offline() else hub_unreachable()
    if why is None:
        try:
            return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
            why = f"download failed: {error}"
    raise MissingWeightsError(
        f"Could not get {filename} from the Hugging Face repository {repo_id} ({why}).\n{HOW_TO_GET_WEIGHTS}")


def resolve_msclap_2023(weights: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """Path of ``CLAP_weights_2023.pth``: ``weights``, else ``$CLAPDEX_WEIGHTS``, else the hub."""
    given = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    if given is None:
        return _download(MSCLAP_REPO, MSCLAP_2023_FILENAME, cache_dir)
    path = Path(given).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} (from --weights or {WEIGHTS_ENV}) does not exist")
    return path


def resolve_gpt2_tokenizer(weights_path: Path, cache_dir: str | Path | None = None) -> Path:
    """Folder holding ``vocab.json`` and ``merges.txt``: next to the weights, else the hub."""
    if all((weights_path.parent / name).is_file() for name in GPT2_TOKENIZER_FILES):
        return weights_path.parent
    folders = {_download(GPT2_TOKENIZER_REPO, name, cache_dir).parent for name in GPT2_TOKENIZER_FILES}
    if len(folders) != 1:
        raise MissingWeightsError(f"GPT-2 tokenizer files ended up in different folders: {sorted(folders)}")
    return folders.pop()


def tensors_fingerprint(state: dict, keys) -> str:
    """16 hex digits of sha256 over ``state``'s tensors named by ``keys``, in that order: the
    ``weights_id`` an index records, so it can refuse queries embedded by other weights."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(state[key].detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
