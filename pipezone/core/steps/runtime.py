"""Everything a run needs, assembled once from settings: catalog, profile, lake layout, state store, Spark.

Steps and CLI commands take a `Runtime` instead of reaching for files or the environment themselves.
Only the flow being run (and the profile's connections) must be valid: a broken file elsewhere in
metadata/ does not stop other flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pipezone.core.lake import delta_log
from pipezone.core.lake.layout import LakeLayout, lake_layout
from pipezone.core.sources.contract import Source
from pipezone.core.sources.registry import open_source
from pipezone.core.spark.session import S3Settings, SparkSettings
from pipezone.core.spec.catalog import Catalog, load_catalog
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection, S3LakeConnection, SqliteConnection
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.problems import SpecError
from pipezone.core.spec.profile import ProfileSpec
from pipezone.core.spec.secrets import SecretResolver, resolver_for
from pipezone.core.spec.settings import Settings
from pipezone.core.state.store import StateStore


class RunError(Exception):
    """A run cannot start or a step failed: one line naming the flow and the cause."""


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    profile: ProfileSpec
    resolver: SecretResolver = field(repr=False)

    @cached_property
    def lake(self) -> LakeLayout:
        return lake_layout(self.connection(self.profile.lake), self.settings)

    @cached_property
    def state(self) -> StateStore:
        store = StateStore(self.state_url())
        store.migrate()
        return store

    def connection(self, name: str) -> ConnectionSpec:
        if name in self.catalog.connections:
            return self.catalog.connection(name)
        broken = self.catalog.broken_connections.get(name)
        if broken:
            raise RunError(f"connection '{name}' is invalid: run `pipezone validate {broken}`")
        raise RunError(f"unknown connection '{name}'")

    def flow(self, name: str) -> FlowSpec:
        if name in self.catalog.flows:
            own = self.catalog.own_problems(name)
            if own:
                raise RunError(f"flow '{name}' is invalid: {own[0]}")
            return self.catalog.flow(name)
        problems = [p for p in self.catalog.problems if Path(p.file).stem == name]
        if problems:
            raise RunError(f"flow '{name}' is invalid: {problems[0]}")
        raise RunError(f"unknown flow '{name}' (flows: {', '.join(sorted(self.catalog.flows)) or 'none'})")

    def source(self, flow: FlowSpec) -> Source:
        """The flow's source, opened on its connection (a gold-only flow has none: a RunError)."""
        if flow.source is None:
            raise RunError(f"flow '{flow.name}' has no source")
        conn = self.connection(flow.source.connection)
        return open_source(flow.source, conn, self.resolver, self.settings.project_root)

    def reveal(self, reference: str | None, *, mask: bool = True) -> str | None:
        """A secret's value, or a literal (user names may be literal), for the one place that needs it.
        `mask=False` for identifiers (user names, access key ids), which logs may show."""
        if reference is None:
            return None
        return self.resolver.resolve(reference, mask=mask).reveal() if reference.startswith("${") else reference

    def state_url(self) -> str:
        """SQLAlchemy URL of the profile's state store (password included: never print it)."""
        from sqlalchemy.engine import URL

        conn = self.connection(self.profile.state_store)
        if isinstance(conn, SqliteConnection):
            path = self.settings.resolve_path(conn.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        assert isinstance(conn, JdbcConnection)
        url = URL.create(
            "mysql+pymysql",
            username=self.reveal(conn.user, mask=False),
            password=self.reveal(conn.password),
            host=conn.host,
            port=conn.effective_port,
            database=conn.database,
        )
        return url.render_as_string(hide_password=False)

    def lake_options(self) -> dict[str, str]:
        """delta-rs storage options for the lake (its S3 endpoint and keys; none for a local folder): what
        reads a Delta log or writes Arrow without Spark needs."""
        return delta_log.storage_options(self.lake_s3())

    def lake_s3(self) -> S3Settings | None:
        """The lake's S3 endpoint and keys (revealed), or None for a lake on a local folder."""
        lake = self.connection(self.profile.lake)
        if not isinstance(lake, S3LakeConnection):
            return None
        endpoint = lake.effective_endpoint
        return S3Settings(
            endpoint=endpoint,
            access_key=self.reveal(lake.access_key, mask=False) or "",
            secret_key=self.reveal(lake.secret_key) or "",
            region=lake.region,
            path_style=lake.path_style,
            ssl=endpoint.startswith("https"),
        )

    def spark_settings(self, app_name: str) -> SparkSettings:
        spark = self.profile.spark
        s3 = self.lake_s3()
        return SparkSettings(
            jar_cache=self.settings.jar_cache,
            master=spark.master,
            app_name=app_name,
            driver_memory=spark.driver_memory,
            shuffle_partitions=spark.shuffle_partitions,
            s3=s3,
            shared_jars=spark.shared_jars,
            driver_host=spark.driver_host,
            extra_conf={"spark.executor.memory": spark.executor_memory, **spark.conf},
            connect_url=spark.connect_url,
            log_dir=self.settings.log_dir,
        )


def load_runtime(settings: Settings, catalog: Catalog | None = None) -> Runtime:
    """The runtime for `settings.profile`; fails with one line when the profile itself is unusable."""
    catalog = catalog or load_catalog(settings.metadata_dir, file_roots=settings.file_roots)
    profile = catalog.profile(settings.profile)
    bad = [p for p in catalog.problems if p.file == catalog.profiles[settings.profile].doc.file]
    if bad:
        raise SpecError(bad)
    return Runtime(settings=settings, catalog=catalog, profile=profile, resolver=resolver_for(settings))
