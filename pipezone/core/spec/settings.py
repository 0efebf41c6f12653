"""The config layer's door to the environment: the only module that reads environment variables.

Everything else receives a `Settings` object, so code is testable with explicit values and the
same code runs embedded or on the real stack by configuration alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SECRET_DIRS = (Path("/run/secrets"),)  # Docker and Compose mount secrets here


@dataclass(frozen=True)
class Settings:
    """Where the project lives and which services it talks to."""

    project_root: Path
    metadata_dir: Path
    profile: str = "default"
    vault_addr: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    vault_namespace: str | None = None
    debug: bool = False
    jar_cache: Path = Path(".pipezone/jars")
    spark_launcher: str = "spark-submit"
    failpoints: tuple[str, ...] = ()  # fault-injection tests only (see failpoints.py)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret_dirs: tuple[Path, ...] = DEFAULT_SECRET_DIRS
    metadata_explicit: bool = False  # --metadata or PIPEZONE_METADATA named the catalog
    problems: tuple[str, ...] = ()  # bad PIPEZONE_* values: they fail what they affect, not the whole catalog

    def resolve_path(self, path: str | Path) -> Path:
        """Paths in connection files are relative to the project root."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.project_root / candidate

    @property
    def file_roots(self) -> tuple[Path, ...]:
        """Where `${file:...}` references may read: the project, then the secret folders."""
        return (self.project_root, *self.secret_dirs)

    def require_launcher(self) -> str:
        """The Spark launcher, or the one line saying why PIPEZONE_SPARK_LAUNCHER is unusable."""
        bad = [p for p in self.problems if p.startswith("PIPEZONE_SPARK_LAUNCHER")]
        if bad:
            raise ValueError(bad[0])
        return self.spark_launcher

    @property
    def log_dir(self) -> Path:
        """Where Spark's full log goes (`spark-<app>.log` per application): the console only gets its errors."""
        return self.project_root / ".pipezone" / "logs"

    @property
    def connections_dir(self) -> Path:
        return self.metadata_dir / "connections"

    @property
    def flows_dir(self) -> Path:
        return self.metadata_dir / "flows"


def find_project_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding metadata/, else `start` itself."""
    for folder in (start, *start.parents):
        if (folder / "metadata" / "flows").is_dir() or (folder / "metadata" / "connections").is_dir():
            return folder
    return start


def load_settings(
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    metadata_dir: Path | None = None,
) -> Settings:
    """Build settings from PIPEZONE_* / VAULT_* variables, with explicit arguments taking precedence."""
    env = dict(os.environ if environ is None else environ)
    launcher, problems = _launcher(env.get("PIPEZONE_SPARK_LAUNCHER"))
    start = (cwd or Path.cwd()).resolve()
    root = Path(env["PIPEZONE_HOME"]).resolve() if env.get("PIPEZONE_HOME") else find_project_root(start)
    explicit = metadata_dir is not None or bool(env.get("PIPEZONE_METADATA"))
    if metadata_dir is None:
        metadata_dir = Path(env["PIPEZONE_METADATA"]) if env.get("PIPEZONE_METADATA") else root / "metadata"
    return Settings(
        project_root=root,
        metadata_dir=metadata_dir.resolve(),
        profile=env.get("PIPEZONE_PROFILE", "default"),
        vault_addr=env.get("VAULT_ADDR"),
        vault_token=env.get("VAULT_TOKEN"),
        vault_namespace=env.get("VAULT_NAMESPACE"),
        debug=env.get("PIPEZONE_DEBUG", "") not in ("", "0", "false"),
        jar_cache=Path(env["PIPEZONE_JAR_CACHE"]) if env.get("PIPEZONE_JAR_CACHE") else root / ".pipezone" / "jars",
        spark_launcher=launcher,
        failpoints=tuple(p.strip() for p in env.get("PIPEZONE_FAILPOINTS", "").split(",") if p.strip()),
        environ=env,
        secret_dirs=_secret_dirs(env.get("PIPEZONE_SECRET_DIRS"), root),
        problems=problems,
        metadata_explicit=explicit,
    )


SPARK_LAUNCHERS = ("spark-submit", "in-process")


def _launcher(value: str | None) -> tuple[str, tuple[str, ...]]:
    """How a task runs its step: its own spark-submit (default) or a Spark session in the task's process.
    A bad value is kept as a problem (the default stands in) so that parsing DAGs never depends on it."""
    if not value:
        return SPARK_LAUNCHERS[0], ()
    if value not in SPARK_LAUNCHERS:
        shown = value if len(value) <= 40 else value[:39] + "…"
        return SPARK_LAUNCHERS[0], (f"PIPEZONE_SPARK_LAUNCHER={shown!r}: expected one of {', '.join(SPARK_LAUNCHERS)}",)
    return value, ()


def _secret_dirs(value: str | None, root: Path) -> tuple[Path, ...]:
    """PIPEZONE_SECRET_DIRS: folders (os.pathsep-separated) `${file:...}` may read besides the project."""
    if value is None:
        return DEFAULT_SECRET_DIRS
    return tuple(
        (root / part).resolve() if not Path(part).is_absolute() else Path(part)
        for part in value.split(os.pathsep)
        if part.strip()
    )
