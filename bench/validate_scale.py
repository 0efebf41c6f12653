"""Time `pipezone validate` (whole process: start-up, YAML, models, cross-file checks) on N generated flows.

Usage: python bench/validate_scale.py [N ...]   (default: 200 1000)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOW = """# yaml-language-server: $schema=../schemas/flow.schema.json
name: flow_{i:04d}
description: Generated flow {i}
owner: bench
tags: [bench]
source:
  connection: retail_demo
  table: table_{i:04d}
  primary_key: [id]
  incremental:
    cursor: updated_at
    lookback: 5m
layers:
  silver:
    transforms:
      - trim: [email]
      - cast: {{amount: "decimal(12,2)"}}
      - derive: {{amount_eur: "amount * 0.9"}}
quality:
  - check: not_null
    columns: [id]
schedule: "{minute} * * * *"
"""


def make_project(root: Path, count: int) -> None:
    shutil.copytree(REPO / "metadata" / "connections", root / "metadata" / "connections")
    flows = root / "metadata" / "flows"
    flows.mkdir(parents=True)
    for i in range(count):
        (flows / f"flow_{i:04d}.yaml").write_text(FLOW.format(i=i, minute=i % 60))


def time_validate(root: Path, repeats: int = 5) -> list[float]:
    exe = Path(sys.executable).with_name("pipezone")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run([str(exe), "validate"], cwd=root, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"validate failed:\n{result.stdout}{result.stderr}")
    return times


def main(counts: list[int]) -> None:
    for count in counts:
        with tempfile.TemporaryDirectory() as tmp:
            make_project(Path(tmp), count)
            times = time_validate(Path(tmp))
        print(
            f"validate {count:5d} flows: median {statistics.median(times):.3f} s, "
            f"min {min(times):.3f} s, max {max(times):.3f} s (5 runs, whole process)"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200, 1000])
