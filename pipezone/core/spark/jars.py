"""The JVM jars PipeZone needs (Delta, s3a, JDBC drivers), resolved once into a local cache.

Spark can fetch Maven packages itself at every start (`spark.jars.packages`), but that needs the
network on every run and re-resolves each time. Instead we resolve the pinned coordinates once into
a cache folder, record the result in a manifest keyed by the pins, and every later session or
`spark-submit` gets plain local paths (`spark.jars`), with no network.

Two resolvers, tried in order: Maven (`mvn`, fast and exact) and Spark's own Ivy resolver (the one
behind `spark.jars.packages`, run once through pyspark's `spark-submit`). Transitive jars that
pyspark already ships (Hadoop client, Parquet, Jackson, Scala, log4j, ...) are dropped: pyspark's
copies win on the classpath anyway, and an older duplicate only risks mixing two versions of a library.

CLI (used by the Makefile for first-use install): `python -m pipezone.core.spark.jars --cache DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
MAVEN_CENTRAL = "Maven Central"
MAVEN_CENTRAL_URL = "https://repo1.maven.org/maven2/"
# Pinned so resolution does not depend on whatever default the local Maven install binds.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
RESOLVE_TIMEOUT_S = 1800  # the AWS SDK bundle alone is ~690 MB


@dataclass(frozen=True)
class MavenDep:
    """One pinned Maven artifact, plus transitive artifacts (`group:artifact`) we refuse to take."""

    group: str
    artifact: str
    version: str
    excludes: tuple[str, ...] = ()

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


# Delta 4.4.x is built for Spark 4.2. The pip package delta-spark==4.4.1 is a Python-only re-release
# (identical code to 4.4.0); Maven Central has no 4.4.1 jar, so the JVM side is 4.4.0. We name the
# Spark-line artifact (`_4.2_2.13`, same jar as the unsuffixed `delta-spark_2.13:4.4.0`) so a Spark
# upgrade visibly needs a new pin. delta-storage/kernel/unitycatalog come transitively.
DELTA = MavenDep(
    "io.delta", "delta-spark_4.2_2.13", "4.4.0", excludes=("commons-logging:commons-logging", "org.roaringbitmap:shims")
)
# Must equal pyspark's Hadoop (pyspark/jars/hadoop-client-api-3.5.0.jar); brings its own AWS SDK v2 bundle.
HADOOP_AWS = MavenDep("org.apache.hadoop", "hadoop-aws", "3.5.0")
# protobuf-java is only for the X DevAPI, never for JDBC.
MYSQL = MavenDep("com.mysql", "mysql-connector-j", "26.10.0", excludes=("com.google.protobuf:protobuf-java",))
# 3.5 is the maintained Java-8 line; 4.0 (Java 17) changes TLS defaults to encrypted+verified.
MARIADB = MavenDep("org.mariadb.jdbc", "mariadb-java-client", "3.5.11")
POSTGRES = MavenDep("org.postgresql", "postgresql", "42.7.14")
SQLITE = MavenDep("org.xerial", "sqlite-jdbc", "3.54.1.0")
MSSQL = MavenDep("com.microsoft.sqlserver", "mssql-jdbc", "13.6.2.jre11")
# ojdbc11: the Java 11+ build of Oracle's thin driver (no required dependencies).
ORACLE = MavenDep("com.oracle.database.jdbc", "ojdbc11", "23.26.0.0.0")

DEPENDENCIES: tuple[MavenDep, ...] = (DELTA, HADOOP_AWS, MYSQL, MARIADB, POSTGRES, SQLITE, MSSQL, ORACLE)

# JDBC driver classes shipped by the jars above, by URL scheme.
JDBC_DRIVERS: dict[str, str] = {
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "postgresql": "org.postgresql.Driver",
    "sqlite": "org.sqlite.JDBC",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
}


class JarResolutionError(RuntimeError):
    """Resolution failed; the message is one line meant for a human, with the cause."""


@dataclass(frozen=True)
class ResolvedJar:
    """A resolved jar file with the Maven identity it came from."""

    group: str
    artifact: str
    path: Path


# --------------------------------------------------------------------------- public API


def resolve_jars(
    cache_dir: Path,
    deps: Sequence[MavenDep] = DEPENDENCIES,
    resolvers: Sequence[str] = ("mvn", "ivy"),
) -> list[Path]:
    """Return local jar paths for `deps`, resolving into `cache_dir` only if the manifest is stale.

    An unchanged pin list costs one small JSON read; a changed one re-resolves (reusing already
    downloaded artifacts). Raises JarResolutionError with a one-line message on failure.
    """
    cache_dir = Path(cache_dir).expanduser().resolve()
    key = manifest_key(deps)
    cached = cached_jars(cache_dir, key)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir):
        cached = cached_jars(cache_dir, key)  # another process may have finished while we waited
        if cached is not None:
            return cached
        return _resolve_and_record(cache_dir, deps, key, resolvers)


def cached_jars(cache_dir: Path, key: str | None = None) -> list[Path] | None:
    """Jar paths from the manifest if it matches `key` (default: the current pins) and every jar exists."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    manifest = _read_manifest(cache_dir / MANIFEST_NAME)
    if manifest is None or manifest.get("key") != (key or manifest_key(DEPENDENCIES)):
        return None
    paths = [cache_dir / rel for rel in manifest.get("jars", [])]
    if not paths or not all(p.is_file() for p in paths):
        return None
    return paths


def manifest_key(deps: Sequence[MavenDep]) -> str:
    """Fingerprint of what decides the jar set: pins, exclusions and the pyspark they must fit."""
    payload = {
        "format": MANIFEST_FORMAT,
        "pyspark": _pyspark_version(),
        "deps": [[d.coordinate, sorted(d.excludes)] for d in deps],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def pyspark_home() -> Path:
    """The installed pyspark package folder (holds `jars/` and `bin/spark-submit`), found without importing it."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise JarResolutionError("pyspark is not installed in this Python environment")
    return Path(spec.origin).parent


# --------------------------------------------------------------------------- resolution


def _resolve_and_record(cache_dir: Path, deps: Sequence[MavenDep], key: str, resolvers: Sequence[str]) -> list[Path]:
    failures: list[str] = []
    for name in resolvers:
        resolver = _RESOLVERS.get(name)
        if resolver is None:
            raise JarResolutionError(f"unknown jar resolver {name!r} (known: {', '.join(_RESOLVERS)})")
        started = time.monotonic()
        try:
            log.info("resolving %d Maven coordinates with %s into %s", len(deps), name, cache_dir)
            resolved = resolver(cache_dir, deps)
        except JarResolutionError as exc:
            log.warning("%s resolver failed: %s", name, exc)
            failures.append(f"{exc} (via {name})")
            continue
        kept = _drop_pyspark_provided(resolved)
        paths = _publish(cache_dir, kept)
        _write_manifest(cache_dir, key, deps, name, paths, time.monotonic() - started)
        return paths
    raise JarResolutionError("; ".join(failures) or "no jar resolver was tried")


def _resolve_with_mvn(cache_dir: Path, deps: Sequence[MavenDep]) -> list[ResolvedJar]:
    """`mvn dependency:build-classpath` on a generated pom; artifacts land in `<cache>/m2`."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarResolutionError("mvn is not on PATH")
    work = cache_dir / "mvn"
    work.mkdir(exist_ok=True)
    (work / "pom.xml").write_text(_pom_xml(deps))
    classpath_file = work / "classpath.txt"
    classpath_file.unlink(missing_ok=True)
    repo = cache_dir / "m2"
    cmd = [
        # -U: retry artifacts whose earlier failure Maven cached; style.color: no ANSI codes in errors.
        mvn, "-B", "-q", "-U", "--no-transfer-progress", "-Dstyle.color=never", "-f", str(work / "pom.xml"),
        f"-Dmaven.repo.local={repo}",
        f"{DEPENDENCY_PLUGIN}:build-classpath",
        f"-Dmdep.outputFile={classpath_file}",
        "-Dmdep.includeScope=runtime",
    ]  # fmt: skip
    result = _run(cmd, cwd=work)
    if result.returncode != 0 or not classpath_file.is_file():
        raise JarResolutionError(_failure_line(deps, _mvn_cause(result.stdout + result.stderr)))
    entries = [Path(p) for p in classpath_file.read_text().strip().split(os.pathsep) if p]
    return [_jar_from_repo_path(repo, p) for p in entries]


def _resolve_with_ivy(cache_dir: Path, deps: Sequence[MavenDep]) -> list[ResolvedJar]:
    """Spark's Ivy resolver (`spark.jars.packages`), run once via pyspark's spark-submit on a no-op script."""
    spark_submit = pyspark_home() / "bin" / "spark-submit"
    if not spark_submit.is_file():
        raise JarResolutionError(f"spark-submit not found at {spark_submit}")
    ivy_dir = cache_dir / "ivy"
    retrieved = ivy_dir / "jars"  # Spark copies the resolved set here; clear it so it holds exactly this set
    shutil.rmtree(retrieved, ignore_errors=True)
    ivy_dir.mkdir(exist_ok=True)
    settings_file = ivy_dir / "ivysettings.xml"
    settings_file.write_text(IVY_SETTINGS)
    noop = ivy_dir / "resolve-noop.py"
    noop.write_text("# resolves spark.jars.packages, then exits\n")
    excludes = sorted({e for d in deps for e in d.excludes})
    cmd = [
        str(spark_submit), "--master", "local[1]",
        "--conf", f"spark.jars.ivy={ivy_dir}",
        "--conf", f"spark.jars.ivySettings={settings_file}",
        "--conf", f"spark.jars.packages={','.join(d.coordinate for d in deps)}",
        *(["--conf", f"spark.jars.excludes={','.join(excludes)}"] if excludes else []),
        str(noop),
    ]  # fmt: skip
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = _run(cmd, cwd=cache_dir, env=env)
    jars = sorted(retrieved.glob("*.jar")) if retrieved.is_dir() else []
    if result.returncode != 0 or not jars:
        raise JarResolutionError(_failure_line(deps, _ivy_cause(result.stdout + result.stderr)))
    return [_jar_from_ivy_name(p) for p in jars]


# Maven Central only. Spark's default chain also reads ~/.m2/repository, and a pom there without its
# jar (common after `mvn dependency:tree`) makes Ivy fail with "download failed: ...!x.jar".
IVY_SETTINGS = f"""<ivysettings>
  <settings defaultResolver="central"/>
  <resolvers>
    <ibiblio name="central" m2compatible="true" root="{MAVEN_CENTRAL_URL}"/>
  </resolvers>
</ivysettings>
"""

_RESOLVERS = {"mvn": _resolve_with_mvn, "ivy": _resolve_with_ivy}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise JarResolutionError(f"{Path(cmd[0]).name} timed out after {exc.timeout:.0f} s") from exc
    except OSError as exc:
        raise JarResolutionError(f"could not run {cmd[0]}: {exc}") from exc


def _pom_xml(deps: Sequence[MavenDep]) -> str:
    """A minimal pom whose only purpose is to list the pins (and their exclusions) for Maven."""
    blocks = []
    for d in deps:
        exclusions = "".join(
            "<exclusion><groupId>{}</groupId><artifactId>{}</artifactId></exclusion>".format(
                *map(escape, e.split(":", 1))
            )
            for e in d.excludes
        )
        blocks.append(
            f"    <dependency><groupId>{escape(d.group)}</groupId><artifactId>{escape(d.artifact)}</artifactId>"
            f"<version>{escape(d.version)}</version>"
            + (f"<exclusions>{exclusions}</exclusions>" if exclusions else "")
            + "</dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>pipezone.local</groupId><artifactId>pipezone-spark-jars</artifactId><version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n" + "\n".join(blocks) + "\n  </dependencies>\n</project>\n"
    )


def _jar_from_repo_path(repo: Path, path: Path) -> ResolvedJar:
    """Maven repository layout is `<group/as/dirs>/<artifact>/<version>/<file>`."""
    rel = path.resolve().relative_to(repo.resolve()).parts
    return ResolvedJar(group=".".join(rel[:-3]), artifact=rel[-3], path=path)


def _jar_from_ivy_name(path: Path) -> ResolvedJar:
    """Spark retrieves jars as `<group>_<artifact>-<version>.jar`."""
    group, _, rest = path.name.partition("_")
    match = re.match(r"(?P<artifact>.+?)-\d", rest)
    return ResolvedJar(group=group, artifact=match["artifact"] if match else rest, path=path)


# --------------------------------------------------------------------------- filtering and publishing


def _drop_pyspark_provided(jars: Sequence[ResolvedJar]) -> list[ResolvedJar]:
    """Drop artifacts pyspark/jars already has in some version (pyspark's own copy wins on the classpath)."""
    shipped = [p.name for p in (pyspark_home() / "jars").glob("*.jar")]
    kept = []
    for jar in jars:
        pattern = re.compile(rf"{re.escape(jar.artifact)}-\d")
        if any(pattern.match(name) for name in shipped):
            log.debug("dropping %s:%s (pyspark ships it)", jar.group, jar.artifact)
            continue
        kept.append(jar)
    return kept


def _publish(cache_dir: Path, jars: Sequence[ResolvedJar]) -> list[Path]:
    """Put exactly the kept jars in `<cache>/lib` (hard links: the AWS bundle is not stored twice)."""
    target = cache_dir / "lib"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    out = []
    for jar in jars:
        dest = target / jar.path.name
        if jar.path.parent == cache_dir / "ivy" / "jars":
            os.replace(jar.path, dest)  # Spark's Ivy retrieve already made a private copy
        else:
            try:
                os.link(jar.path, dest)
            except OSError:
                shutil.copy2(jar.path, dest)
        out.append(dest)
    return out


# --------------------------------------------------------------------------- manifest


def _read_manifest(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def _write_manifest(
    cache_dir: Path, key: str, deps: Sequence[MavenDep], resolver: str, paths: Sequence[Path], seconds: float
) -> None:
    data = {
        "format": MANIFEST_FORMAT,
        "key": key,
        "pyspark": _pyspark_version(),
        "coordinates": [d.coordinate for d in deps],
        "resolver": resolver,
        "resolve_seconds": round(seconds, 1),
        "jars": [str(p.relative_to(cache_dir)) for p in paths],
    }
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, cache_dir / MANIFEST_NAME)


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialize resolutions of one cache across processes (Makefile and tests may race)."""
    with open(cache_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pyspark_version() -> str:
    try:
        return importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        return "none"


# --------------------------------------------------------------------------- error lines


def _failure_line(deps: Sequence[MavenDep], cause: str) -> str:
    """`could not resolve <the pins named in the cause, else all> from Maven Central: <cause>`."""
    named = [d.coordinate for d in deps if d.artifact in cause]
    what = ", ".join(named) if named else f"{len(deps)} pinned coordinates"
    return f"could not resolve {what} from {MAVEN_CENTRAL}: {cause}"


def _mvn_cause(output: str) -> str:
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    errors = [
        line.removeprefix("[ERROR]").strip()
        for line in output.splitlines()
        if line.startswith("[ERROR]") and line.removeprefix("[ERROR]").strip()
    ]
    cause = errors[0] if errors else (output.strip().splitlines() or ["mvn failed with no output"])[-1]
    cause = re.sub(r"^Failed to execute goal(?: .*?)? on project [^:]+: ", "", cause)
    cause = re.sub(r"^Could not resolve dependencies for project \S+: ", "", cause)
    return _one_line(re.sub(r"\s*-> \[Help \d+\]$", "", cause))


def _ivy_cause(output: str) -> str:
    for kind in ("unresolved dependency", "download failed"):
        found = re.findall(rf"{kind}: ([^,\]\n]+)", output)
        if found:
            return _one_line(f"{kind}: " + "; ".join(dict.fromkeys(f.strip() for f in found)))
    lines = [ln for ln in output.splitlines() if "Exception" in ln or "ERROR" in ln]
    return _one_line(lines[0] if lines else (output.strip().splitlines() or ["spark-submit failed"])[-1])


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Resolve (if needed) and print one jar path per line; errors are one line on stderr, exit 1."""
    parser = argparse.ArgumentParser(prog="python -m pipezone.core.spark.jars", description=main.__doc__)
    parser.add_argument("--cache", required=True, type=Path, help="jar cache folder, e.g. .pipezone/jars")
    parser.add_argument(
        "--resolver", choices=["auto", *_RESOLVERS], default="auto", help="force one resolver (default: mvn, then ivy)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    resolvers = tuple(_RESOLVERS) if args.resolver == "auto" else (args.resolver,)
    try:
        paths = resolve_jars(args.cache, resolvers=resolvers)
    except JarResolutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: jar cache {args.cache}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
