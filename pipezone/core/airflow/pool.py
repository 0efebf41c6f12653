"""The Airflow pool every PipeZone task takes a slot of, sized from the profile (`spark.parallel_steps`).

Hundreds of small flows on one schedule would otherwise start all their steps at once: as many JVMs (or
Connect clients sharing one driver) as the executor allows, on a machine sized for a few. Airflow's pool
is the one limit that spans DAGs; its slots are a database row, so it is set by a command
(`pipezone airflow-pool`, run by `make airflow` and the compose stack's `airflow-init`), never at parse time.
A task in a pool that does not exist is never scheduled: the README says to create it.
"""

from __future__ import annotations

POOL = "pipezone_spark"


def describe(profile: str, slots: int) -> str:
    return f"PipeZone steps running at once on profile {profile}'s Spark (spark.parallel_steps: {slots})"


def ensure_pool(profile: str, slots: int) -> str:
    """Create or resize the pool in the Airflow metadata database AIRFLOW_HOME points at; one line saying so."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(POOL, slots, describe(profile, slots), include_deferred=False)
    return f"airflow pool {POOL}: {slots} slot(s) (profile {profile}, spark.parallel_steps)"
