"""Settings for one library home, from one place.

Precedence, lowest first: built-in defaults, ``<home>/config.toml``, ``CLAPDEX_*``
environment variables, then explicit overrides (command-line flags). The home itself
comes from ``--home``, else ``CLAPDEX_HOME``, else ``~/.clapdex``.

``config.toml`` holds the same keys as the fields below, e.g.::

    catalog = "postgresql://clapdex@127.0.0.1/clapdex"
    weights = "/models/CLAP_weights_2023.pth"
    ucs_list = "/data/UCS v8.2.1 Full List.csv"
    roots = ["/srv/sfx"]
    admins = ["ana@studio.example"]
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from encoders import list_models

ENV_PREFIX = "CLAPDEX_"
CONFIG_FILE = "config.toml"


class ConfigError(ValueError):
    """A setting is missing, misspelt or of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Settings:
    home: Path
    # SQLAlchemy URL of the catalog; empty means SQLite inside the home.
    catalog: str = ""
    # Vector store: "faiss" (files inside the home) or a qdrant:// URL, which may give the layout
    # of the collection it makes: qdrant://host:6333?shards=6&replicas=2&write_consistency=2.
    store: str = "faiss"
    # Empty: the model the index was built with; for a new index MS-CLAP 2023, or where its
    # weights cannot be had, the compact model that ships with clapdex.
    model: str = ""
    # Path to a weights file; empty means the model's default source (the Hugging Face cache).
    weights: str = ""
    device: str = "auto"
    # Windows per model call; 0 lets the encoder choose for its device.
    batch_size: int = 0
    # Run MS-CLAP's audio tower through torch.compile when indexing on a GPU: 45 s up front the
    # first time, then twice the encoder's windows/s (docs/benchmarks.md); pays for hours of audio.
    compile: bool = False
    # Library roots served by the UI; files outside them are never read for a user.
    roots: tuple[str, ...] = ()
    # E-mail addresses that sign in to the page through an OpenID Connect provider as admins;
    # everyone else who signs in there may only read.
    admins: tuple[str, ...] = ()
    # The official UCS list saved as CSV (search/ucs.py reads it): with it `clapdex tag` suggests
    # subcategories (CatIDs), without it only the 82 built-in categories.
    ucs_list: str = ""

    @property
    def catalog_url(self) -> str:
        return self.catalog or f"sqlite:///{self.home / 'catalog.sqlite'}"

    @property
    def vectors_dir(self) -> Path:
        return self.home / "vectors"

    def environment(self) -> dict[str, str]:
        """These settings as the CLAPDEX_* variables ``load_settings`` reads, for a process of
        ours started to work on the same library (the page's server, an index run)."""
        passed = {ENV_PREFIX + name.upper(): str(getattr(self, name))
                  for name in ("home", "catalog", "store", "model", "weights", "device", "ucs_list")}
        passed[ENV_PREFIX + "ROOTS"] = os.pathsep.join(self.roots)
        return passed


def default_home() -> Path:
    return Path(os.environ.get(ENV_PREFIX + "HOME") or Path.home() / ".clapdex").expanduser()


def _coerce(name: str, value: Any) -> Any:
    field = {f.name: f for f in dataclasses.fields(Settings)}[name]
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "int":
            return int(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.strip().lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                    raise ValueError("expected true or false")
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [part for part in value.split(os.pathsep) if part]
            return tuple(str(v) for v in value)
        if kind == "Path":
            return Path(value).expanduser()
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r} has an invalid value {value!r}: {exc}") from None


def load_settings(home: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Settings for ``home`` (or the default home), with ``overrides`` applied last.

    Overrides whose value is None are ignored, so CLI flags can be passed straight through.
    """
    home_path = Path(home).expanduser() if home else default_home()
    names = {f.name for f in dataclasses.fields(Settings)} - {"home"}
    values: dict[str, Any] = {}

    config_path = home_path / CONFIG_FILE
    if config_path.is_file():
        try:
            from_file = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        unknown = set(from_file) - names
        if unknown:
            raise ConfigError(f"{config_path}: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
        values.update(from_file)

    for name in names:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env

    unknown = set(overrides) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})

    settings = Settings(home=home_path, **{k: _coerce(k, v) for k, v in values.items()})
    for name, check in _CHECKS.items():
        problem = check(getattr(settings, name))
        if problem:
            raise ConfigError(f"setting {name!r} has an invalid value {getattr(settings, name)!r}: {problem}")
    return settings


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_problem(value: str) -> str | None:
    """Why ``value`` names no device (auto, cpu, cuda, cuda:N, several joined by commas, or all)."""
    if value == "all" or all(_DEVICE.fullmatch(part.strip()) for part in value.split(",")):
        return None
    return "expected auto, cpu, cuda, cuda:N, several such as cuda:0,cuda:1, or all"


def store_problem(value: str) -> str | None:
    if value == "faiss":
        return None
    if value.startswith(("qdrant://", "qdrant+local://")):
        from search.qdrant_store import parse_qdrant_url  # the Qdrant store owns its URL's syntax

        try:
            parse_qdrant_url(value)
        except ConfigError as problem:
            return str(problem)
        return None
    return "expected faiss, qdrant://HOST:PORT[?shards=N&replicas=N&write_consistency=N] or qdrant+local:///FOLDER"


def model_problem(value: str) -> str | None:
    if not value or value in list_models():
        return None
    return f"expected one of {', '.join(list_models())}"


def catalog_problem(value: str) -> str | None:
    if not value:
        return None
    try:
        make_url(value)
    except ArgumentError:
        return "expected a database URL, such as postgresql+psycopg://USER@HOST/DB or sqlite:////path/catalog.sqlite"
    return None


_CHECKS = {
    "device": device_problem, "store": store_problem, "model": model_problem, "catalog": catalog_problem,
    "batch_size": lambda value: "expected 0 (the model chooses) or more" if value < 0 else None,
}
