"""The ids PipeZone gives Airflow, checked against Airflow's own rules before Airflow sees them.

Airflow refuses a DAG or task id longer than 250 characters or outside `[A-Za-z0-9_.-]` (its KEY_REGEX,
`airflow.utils.helpers.validate_key`), and a tag longer than 100 characters (`TAG_MAX_LEN`); an id it
refuses raises while the DAG file is imported, which drops every DAG of the file. So flow names are
checked at validation, and a placeholder's id (made from a file name, which can be anything the file
system allows) is cut to fit, with a short hash of the full name to keep ids of different files apart.
"""

from __future__ import annotations

import hashlib
import re

AIRFLOW_KEY_MAX = 250
AIRFLOW_TAG_MAX = 100
DAG_PREFIX = "pipezone_"
INVALID_PREFIX = "pipezone_invalid_"
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def key_problem(key: str, what: str = "DAG id") -> str | None:
    """Why Airflow would refuse `key` as a DAG or task id, or None."""
    if len(key) > AIRFLOW_KEY_MAX:
        return f"{what} '{key[:40]}…' has {len(key)} characters, over Airflow's limit of {AIRFLOW_KEY_MAX}"
    if not _KEY.fullmatch(key):
        return f"{what} must use only letters, digits, '_', '.' and '-' (Airflow's rule)"
    return None


def flow_dag_id(name: str) -> str:
    return DAG_PREFIX + name


def placeholder_dag_id(stem: str, kind: str) -> str:
    """`pipezone_invalid_[<kind>_]<stem>`, made safe for Airflow and at most its 250 characters."""
    base = INVALID_PREFIX + ("" if kind == "flow" else f"{kind}_") + _UNSAFE.sub("_", stem)
    if len(base) <= AIRFLOW_KEY_MAX:
        return base
    digest = hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{base[: AIRFLOW_KEY_MAX - len(digest) - 1]}_{digest}"
