"""spark-submit entry point: Carry new raw batches into bronze: snake_case, typed, deduplicated per batch.

Usage: spark-submit spark/jobs/bronze.py --flow FLOW --run-id RUN_ID [--full-refresh]
Idempotent per run id; prints one summary line (rows in/out, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("bronze"))
