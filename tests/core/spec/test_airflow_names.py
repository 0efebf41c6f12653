"""DAG ids checked against Airflow's own rule, and placeholder ids that always fit it."""

from __future__ import annotations

from airflow.utils.helpers import validate_key

from pipezone.core.spec.airflow_names import AIRFLOW_KEY_MAX, key_problem, placeholder_dag_id


def test_key_problem_names_the_limit() -> None:
    assert key_problem("pipezone_orders") is None
    assert "over Airflow's limit of 250" in (key_problem("x" * 251) or "")
    assert "only letters, digits" in (key_problem("pipezone_orders\n") or "")


def test_placeholder_ids_fit_airflow_and_stay_distinct() -> None:
    long_a, long_b = "a" * 300 + "_one", "a" * 300 + "_two"
    ids = {placeholder_dag_id(stem, "flow") for stem in (long_a, long_b, "weird näme (copy)", "x\ny")}
    assert len(ids) == 4
    for dag_id in ids:
        assert len(dag_id) <= AIRFLOW_KEY_MAX
        validate_key(dag_id)  # Airflow's own check raises on a bad key
    assert placeholder_dag_id("shop", "connection") == "pipezone_invalid_connection_shop"
