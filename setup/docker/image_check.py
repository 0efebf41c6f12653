"""Build-time check of the PipeZone image (last step of setup/docker/Dockerfile); exit 1 names what is wrong.

- the pinned versions are the ones installed (pip did not move Airflow, pyspark or Delta);
- pyspark is whole: `apache-airflow-providers-apache-spark` pulls `pyspark-client`, which overwrites
  pyspark's files so that `pyspark.status` loses `SparkJobInfo`;
- the baked jar cache matches the pins and this pyspark (containers must start with no network);
- Java is there, and the DAG factory and the Airflow plugin import.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import shutil
import sys
from pathlib import Path

PINS = {"apache-airflow": "3.3.2", "pyspark": "4.2.0", "delta-spark": "4.4.1"}


def problems() -> list[str]:
    found = []
    for name, version in PINS.items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            found.append(f"{name} is {installed}, expected {version}")
    try:
        md.version("pyspark-client")
        found.append("pyspark-client is installed: it overwrites pyspark's files (remove the provider that pulls it)")
    except md.PackageNotFoundError:
        pass
    try:
        from pyspark.status import SparkJobInfo  # noqa: F401
    except ImportError as err:
        found.append(f"pyspark is broken: {err}")
    from pipezone.core.spark.jars import cached_jars

    cache = Path(os.environ.get("PIPEZONE_JAR_CACHE", "/opt/pipezone/jars"))
    if cached_jars(cache) is None:
        found.append(f"jar cache {cache} is missing or stale (run python -m pipezone.core.spark.jars --cache {cache})")
    java_home = os.environ.get("JAVA_HOME", "")
    if not (Path(java_home) / "bin" / "java").is_file() or shutil.which("java") is None:
        found.append(f"no java at JAVA_HOME={java_home!r}")
    for module in ("delta", "pipezone.core.airflow.dag_factory", "pipezone.core.airflow.operator"):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - report any import failure as one line
            found.append(f"import {module}: {type(err).__name__}: {err}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"image check: {line}", file=sys.stderr)
    if not found:
        print("image check: ok (" + ", ".join(f"{k} {v}" for k, v in PINS.items()) + ", jars cached, java present)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
