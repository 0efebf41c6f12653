"""Static checks of the Docker Compose stack (setup/docker): no Docker daemon needed.

The compose files are parsed with PyYAML (anchors and `<<` merges resolved) and checked for what a broken
stack would otherwise only show at `make up`: services, pinned images, loopback ports, volumes,
healthchecks, init containers, variables documented in .env.example, the Dockerfile's pins, and the
`docker` profile against the services it names. When a `docker compose` CLI is present, `config`
validates the merged files too.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipezone.core.lake.layout import lake_layout
from pipezone.core.spec.catalog import load_catalog
from pipezone.core.spec.connection import JdbcConnection, S3LakeConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "setup" / "docker"
FILES = {
    "infra": DOCKER / "docker-compose.infra.yml",
    "spark": DOCKER / "docker-compose.spark.yml",
    "airflow": DOCKER / "docker-compose.airflow.yml",
}
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
README = DOCKER / "README.md"
DOCKER_FILES = ("profiles/docker.yaml", "connections/docker_lake.yaml", "connections/docker_state.yaml")

EXPECTED_SERVICES = {
    "infra": {"mysql", "minio", "minio-init", "vault", "vault-seed"},
    "spark": {"spark-master", "spark-worker"},
    "airflow": {
        "airflow-db",
        "airflow-init",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "spark-connect",
    },
}
# (service, host port with the defaults, container port): what README.md documents.
EXPECTED_PORTS = {
    "infra": {("mysql", 3306, 3306), ("minio", 9000, 9000), ("minio", 9001, 9001), ("vault", 8200, 8200)},
    "spark": {("spark-master", 8090, 8090), ("spark-worker", 8091, 8091)},
    "airflow": {("airflow-api-server", 8080, 8080), ("spark-connect", 4040, 4040)},
}
STATEFUL = {"mysql": "/var/lib/mysql", "minio": "/data", "airflow-db": "/var/lib/postgresql/data"}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "FERNET")
# `$$` is a literal dollar; `${NAME...}` and `$NAME` are compose interpolation.
_DOLLAR = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?\}$")


# --------------------------------------------------------------------------- helpers


def compose(kind: str) -> dict[str, Any]:
    return yaml.safe_load(FILES[kind].read_text())


def merged_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    for kind in FILES:
        services.update(compose(kind)["services"])
    return services


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def references(text: str) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of every interpolation in a compose file's text."""
    refs = []
    for match in _DOLLAR.finditer(text):
        token = match.group(1)
        if token == "$":
            continue
        if token.startswith("{"):
            braced = _BRACED.match(token)
            assert braced, f"unparsable interpolation ${token}"
            refs.append((braced["name"], braced["op"], braced["arg"]))
        else:
            refs.append((token, None, None))
    return refs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation, with `env` as the .env file (a literal `$$` becomes `$`)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "$":
            return "$"
        braced = _BRACED.match(token) if token.startswith("{") else None
        name = braced["name"] if braced else token
        if braced and braced["op"] in (":-", "-") and not env.get(name):
            return braced["arg"]
        return env.get(name, "")

    return _DOLLAR.sub(one, value)


def defaults_only(value: str) -> str:
    """The value compose gets with an empty .env: `${VAR:-default}` -> default."""
    return interpolate(value, {})


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of the service's short-syntax ports, with the defaults."""
    out = []
    for spec in service.get("ports", []):
        assert isinstance(spec, str), f"use the short 'ip:host:container' syntax: {spec!r}"
        parts = defaults_only(spec).split(":")
        assert len(parts) == 3, f"port {spec!r} must name the host address: 'ip:host:container'"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return "\n".join(command) if isinstance(command, list) else str(command)


# --------------------------------------------------------------------------- services and images


@pytest.mark.parametrize("kind", FILES)
def test_each_file_has_its_services(kind: str) -> None:
    data = compose(kind)
    assert data.get("name") == "pipezone", "every file names the same project, so they merge into one"
    assert set(data["services"]) == EXPECTED_SERVICES[kind]


@pytest.mark.parametrize("kind", FILES)
def test_every_image_is_pinned(kind: str) -> None:
    for name, service in compose(kind)["services"].items():
        image = defaults_only(service.get("image", ""))
        assert image, f"{name}: no image (a build-only service gets a random name; name and tag it)"
        assert "${" not in image and "$" not in image, f"{name}: {image!r} has no default"
        repo, _, digest = image.partition("@")
        last = repo.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        assert tag or digest.startswith("sha256:"), f"{name}: {image} has neither a tag nor a digest"
        assert tag not in ("latest", "stable", "dev", "main"), f"{name}: {image} floats"
        # PostgreSQL's versions are MAJOR.MINOR; everything else here is MAJOR.MINOR.PATCH or RELEASE.<date>.
        parts = 2 if last.startswith("postgres:") else 3
        if tag[:1].isdigit():
            assert re.match(rf"\d+(\.\d+){{{parts - 1}}}", tag), f"{name}: {image}: pin the full version, not {tag}"
        assert not repo.startswith(("minio/", "docker.io/minio/")), f"{name}: minio/* left Docker Hub; use quay.io"


def test_pipezone_image_services_build_it_from_the_repo() -> None:
    users = {n: s for n, s in merged_services().items() if "pipezone" in defaults_only(s.get("image", ""))}
    assert set(users) >= {"spark-master", "spark-worker", "airflow-scheduler", "airflow-api-server"}
    images = {defaults_only(s["image"]) for s in users.values()}
    assert len(images) == 1, f"Spark and Airflow must run the same image: {images}"
    for kind in FILES:
        for name, service in compose(kind)["services"].items():
            if name not in users:
                continue
            build = service.get("build")
            assert build, f"{name}: uses the PipeZone image but cannot build it"
            assert (FILES[kind].parent / build["context"]).resolve() == REPO
            assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE


# --------------------------------------------------------------------------- ports, volumes, health


@pytest.mark.parametrize("kind", FILES)
def test_ports_are_the_documented_ones_on_loopback(kind: str) -> None:
    seen = set()
    for name, service in compose(kind)["services"].items():
        for host_ip, host_port, container_port in published(service):
            assert host_ip == "127.0.0.1", f"{name}: port {host_port} is published on {host_ip}, not loopback"
            seen.add((name, host_port, container_port))
    assert seen == EXPECTED_PORTS[kind]
    readme = README.read_text()
    for name, host_port, _ in seen:
        assert re.search(rf"\b{host_port}\b", readme), f"README.md does not document port {host_port} ({name})"


def test_bind_address_default_is_loopback_everywhere() -> None:
    assert env_example()["PIPEZONE_BIND_ADDRESS"] == "127.0.0.1"
    for kind in FILES:
        for name, arg in ((n, a) for n, op, a in references(FILES[kind].read_text()) if n == "PIPEZONE_BIND_ADDRESS"):
            assert arg == "127.0.0.1", f"{kind}: ${{{name}}} defaults to {arg!r}"


@pytest.mark.parametrize("kind", FILES)
def test_named_volumes_are_declared(kind: str) -> None:
    data = compose(kind)
    declared = set(data.get("volumes") or {})
    used = set()
    for name, service in data["services"].items():
        for spec in service.get("volumes", []):
            source = spec.split(":", 1)[0] if isinstance(spec, str) else spec.get("source", "")
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name}: volume {source!r} is not declared at the top level"
                used.add(source)
            elif source.startswith("."):
                assert (FILES[kind].parent / source).resolve().exists(), f"{name}: bind source {source} missing"
    assert declared == used, f"declared but unused: {declared - used}"


def test_stateful_services_keep_data_in_named_volumes_and_have_healthchecks() -> None:
    services = merged_services()
    for name, path in STATEFUL.items():
        targets = {v.split(":")[1] for v in services[name].get("volumes", []) if not v.startswith((".", "/"))}
        assert path in targets, f"{name}: {path} is not on a named volume (data would die with the container)"
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shot
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: long-running service without a healthcheck"


def test_one_shot_services_are_awaited_by_a_long_running_service() -> None:
    """`up --wait` fails on a one-shot that exits, unless a running service depends on its completion."""
    services = merged_services()
    one_shots = {n for n, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"minio-init", "vault-seed", "airflow-init"}
    for shot in one_shots:
        adopters = [
            n
            for n, s in services.items()
            if n not in one_shots
            and (s.get("depends_on") or {}).get(shot, {}).get("condition") == "service_completed_successfully"
        ]
        assert adopters, f"no long-running service waits for {shot} to complete"


def test_dependencies_exist_and_have_no_cycle() -> None:
    services = merged_services()
    graph = {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    for name, deps in graph.items():
        assert deps <= set(services), f"{name} depends on unknown {deps - set(services)}"
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"dependency cycle among {set(graph) - done}"
        done |= ready


# --------------------------------------------------------------------------- variables


def test_every_variable_is_documented_and_every_documented_one_is_used() -> None:
    documented = env_example()
    used = {name for kind in FILES for name, _, _ in references(FILES[kind].read_text())}
    assert used - set(documented) == set(), "used in compose but not in .env.example"
    assert set(documented) - used == set(), "in .env.example but used by no compose file"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("# "), f".env.example: {line.split('=')[0]} has no comment"


def test_secrets_have_no_defaults_and_placeholders_only() -> None:
    documented = env_example()
    for kind in FILES:
        for name, op, _ in references(FILES[kind].read_text()):
            if any(word in name for word in SECRET_WORDS):
                assert op == ":?", f"{kind}: secret ${{{name}}} must be required (${{{name}:?...}}), not {op!r}"
    for name, value in documented.items():
        if any(word in name for word in SECRET_WORDS):
            assert value == "change-me", f".env.example: {name} must be the placeholder change-me"


def test_init_env_makes_fresh_secrets_and_keeps_an_existing_file(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("init_env", DOCKER / "init_env.py")
    assert spec and spec.loader
    init_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(init_env)
    target = tmp_path / ".env"
    assert init_env.main([str(target)]) == 0
    first = dict(line.split("=", 1) for line in target.read_text().splitlines() if line and line[0] != "#")
    assert set(first) == set(env_example())
    assert "change-me" not in first.values()
    assert len(base64.urlsafe_b64decode(first["AIRFLOW_FERNET_KEY"])) == 32
    assert (
        re.fullmatch(r"[A-Za-z0-9]+", first["VAULT_ROOT_TOKEN"])
        and first["VAULT_ROOT_TOKEN"] != first["PIPEZONE_VAULT_TOKEN"]
    )
    assert target.stat().st_mode & 0o077 == 0, ".env holds secrets: mode 600"
    before = target.read_text()
    assert init_env.main([str(target)]) == 0
    assert target.read_text() == before, "an existing .env must never be rewritten"


# --------------------------------------------------------------------------- the image


def test_dockerfile_pins_its_base_and_installs_with_constraints() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    airflow_pin = re.search(r'"apache-airflow==([\d.]+)"', pyproject)
    assert airflow_pin
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms == [f"apache/airflow:{airflow_pin[1]}-python3.11"], froms
    installs = [ln for ln in _logical_lines(text) if re.search(r"\bpip install\b", ln)]
    assert installs
    for line in installs:
        assert re.search(r"-c \S*constraints\.txt", line), f"pip install without -c constraints.txt: {line}"
    assert any(f'"apache-airflow=={airflow_pin[1]}"' in ln for ln in installs), "pin Airflow to the base image's"
    assert "openjdk-17-jre-headless" in text
    assert re.search(r"^ENV .*JAVA_HOME=", text, re.MULTILINE)


def test_dockerfile_bakes_the_jars_into_the_cache_it_points_at() -> None:
    text = DOCKERFILE.read_text()
    assert "PIPEZONE_JAR_CACHE=/opt/pipezone/jars" in text
    bake = [ln for ln in _logical_lines(text) if ln.startswith("RUN") and "pipezone.core.spark.jars" in ln]
    assert bake and "python -m pipezone.core.spark.jars --cache /opt/pipezone/jars" in bake[0]
    assert "image_check.py" in text.rsplit("RUN", 1)[1], "the last step checks versions, pyspark and the jars"


def test_dockerfile_copies_only_what_the_dockerignore_lets_in() -> None:
    allowed = [p[1:].rstrip("/") for p in DOCKERIGNORE.read_text().splitlines() if p.startswith("!")]
    lines = DOCKERIGNORE.read_text().splitlines()
    assert "*" in lines and lines.index("*") < lines.index(f"!{allowed[0]}"), "start from 'ignore everything'"
    for line in _logical_lines(DOCKERFILE.read_text()):
        if not line.startswith("COPY") or "--from" in line:
            continue
        sources = [s for s in line.split()[1:-1] if not s.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is dockerignored"
    for secret_prone in (".venv", ".pipezone", ".git", "setup/docker/.env"):
        assert not any(secret_prone == a or secret_prone.startswith(a + "/") for a in allowed)


def _logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with their `\\` continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


# --------------------------------------------------------------------------- the docker profile


def test_docker_profile_and_connections_validate() -> None:
    catalog = load_catalog(REPO / "metadata")
    problems = [p for p in catalog.problems if any(p.file.endswith(f) for f in DOCKER_FILES)]
    assert problems == []
    profile = catalog.profile("docker")
    assert (profile.lake, profile.state_store) == ("docker_lake", "docker_state")


def test_docker_profile_names_the_compose_services() -> None:
    catalog = load_catalog(REPO / "metadata")
    profile = catalog.profile("docker")
    services = merged_services()
    env = env_example()
    lake = catalog.connection(profile.lake)
    state = catalog.connection(profile.state_store)
    assert isinstance(lake, S3LakeConnection) and isinstance(state, JdbcConnection)
    assert lake.endpoint == "http://minio:9000" and "minio" in services
    buckets = {
        uri.removeprefix("s3a://")
        for uri in lake_layout(lake, load_settings(environ={"PIPEZONE_HOME": str(REPO)}, cwd=REPO)).roots.values()
    }
    assert buckets == {"raw", "bronze", "silver", "gold", "quarantine", "quality"}
    minio_init = command_text(services["minio-init"])
    missing = [b for b in buckets if b not in minio_init]
    assert not missing, f"minio-init must create every lake bucket; it misses {missing}"
    assert (state.host, state.effective_port) == ("mysql", 3306)
    assert services["mysql"]["environment"]["MYSQL_DATABASE"] == state.database
    master = command_text(services["spark-master"]).split()
    assert profile.spark.master == f"spark://{master[master.index('--host') + 1]}:{master[master.index('--port') + 1]}"
    assert profile.spark.ui_url == f"http://localhost:{env['SPARK_MASTER_UI_PORT']}"
    assert profile.lake_console_url == f"http://localhost:{env['MINIO_CONSOLE_PORT']}"
    airflow_env = services["airflow-scheduler"]["environment"]
    assert airflow_env["PIPEZONE_PROFILE"] == profile.name
    assert airflow_env["VAULT_ADDR"] == "http://vault:8200"


def test_docker_profile_resolves_with_what_vault_seed_writes(tmp_path: Path) -> None:
    """Every ${vault:...} of the docker connections is a path and key vault-seed writes, from .env values."""
    services = merged_services()
    seed = command_text(services["vault-seed"])
    env = {**env_example(), "MYSQL_PASSWORD": "pw-mysql", "PIPEZONE_LAKE_SECRET_KEY": "pw-lake"}
    written: dict[tuple[str, str], dict[str, str]] = {}
    for match in re.finditer(r"vault kv put -mount=(\S+) (\S+)((?:\s+\\?\s*\w+=\"\$\$\w+\")+)", seed):
        pairs = re.findall(r"(\w+)=\"\$\$(\w+)\"", match.group(3))
        written[(match.group(1), match.group(2))] = {key: env[var] for key, var in pairs}
    assert set(written) == {("secret", "pipezone/minio"), ("secret", "pipezone/mariadb")}
    for var in {v for _, v in re.findall(r"(\w+)=\"\$\$(\w+)\"", seed)}:
        assert var in services["vault-seed"]["environment"], f"vault-seed uses ${var} but is not given it"

    settings = load_settings(environ={"PIPEZONE_HOME": str(REPO), "PIPEZONE_PROFILE": "docker"}, cwd=REPO)
    catalog = load_catalog(settings.metadata_dir)
    resolver = SecretResolver({}, REPO, vault=lambda mount, path: written[(mount, path)])
    runtime = Runtime(settings=settings, catalog=catalog, profile=catalog.profile("docker"), resolver=resolver)
    assert runtime.state_url() == "mysql+pymysql://pipezone:pw-mysql@mysql:3306/pipezone"
    spark = runtime.spark_settings("check")
    assert spark.master == "spark://spark-master:7077"
    assert spark.s3 is not None and (spark.s3.endpoint, spark.s3.access_key, spark.s3.secret_key) == (
        "http://minio:9000",
        "pipezone-lake",
        "pw-lake",
    )


# --------------------------------------------------------------------------- docker compose itself


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return ["docker", "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_merged_files(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` CLI on this machine")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={'x' * 12 if v == 'change-me' else v}\n" for k, v in env_example().items()))
    files = [arg for f in FILES.values() for arg in ("-f", str(f))]
    cmd = [*cli, "--project-directory", str(DOCKER), "--env-file", str(env_file), *files, "config", "--services"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set().union(*EXPECTED_SERVICES.values())
