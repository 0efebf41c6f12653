"""`pipezone validate [PATHS]`: every problem of the catalog (or of the given files) as one line each.

It exits 0 (valid) or 1 (problems), nothing else, whatever the files hold: even a bug of ours becomes one
line and exit 1. Which catalog the files are checked against:

- no paths: the project's (`./metadata`, `--metadata` or `PIPEZONE_METADATA`);
- a folder holding connections/, profiles/ or flows/: that folder, as a whole catalog of its own;
- files or folders inside another project's metadata folder: that project's catalog (unless `--metadata`
  or `PIPEZONE_METADATA` names one), so a copy of a flow is not reported as a duplicate of ours.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipezone.core.spec.catalog import display_path, expand_paths, is_metadata_root, load_catalog, shared_metadata_root
from pipezone.core.spec.problems import Problem
from pipezone.core.spec.settings import Settings

VALID, PROBLEMS = 0, 1


def validate(paths: list[Path], settings: Settings, *, debug: bool = False) -> int:
    try:
        return _validate(paths, settings)
    except Exception as err:  # noqa: BLE001 - validate never exits 2: even our own bug is one line and exit 1
        if debug:
            raise
        print(f"pipezone: error: {type(err).__name__}: {err}".splitlines()[0], file=sys.stderr)
        return PROBLEMS


def _validate(paths: list[Path], settings: Settings) -> int:
    started = time.perf_counter()
    missing = [p for p in paths if not p.exists() and not p.is_symlink()]
    present = [p for p in paths if p not in missing]
    roots = [p for p in present if is_metadata_root(p)]
    targets = expand_paths(present)
    home = None if settings.metadata_explicit else shared_metadata_root(present)
    if home is None and roots:  # a metadata folder given with --metadata: the given folders are the catalog
        catalog = load_catalog(None, targets, file_roots=settings.file_roots)
    else:
        catalog = load_catalog(home or settings.metadata_dir, targets, file_roots=settings.file_roots)
    shown = {display_path(path) for path, _ in targets}
    problems = [p for p in catalog.problems if roots or not paths or p.file in shown]
    problems += [Problem(str(p), 1, 1, "(file)", "no such file or folder") for p in missing]
    for problem in problems:
        print(problem)
    elapsed = time.perf_counter() - started
    if problems:
        files = len({p.file for p in problems})
        print(f"{len(problems)} problem(s) in {files} file(s) ({elapsed:.2f} s)", file=sys.stderr)
        return PROBLEMS
    scope = (
        f"{len(targets)} file(s)"
        if paths and not roots
        else f"{len(catalog.flows)} flows, {len(catalog.connections)} connections, {len(catalog.profiles)} profiles"
    )
    print(f"ok: {scope} valid ({elapsed:.2f} s)", file=sys.stderr)
    return VALID
