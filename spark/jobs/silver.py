"""spark-submit entry point: Carry new bronze batches into silver: transforms, then a forward-only merge by primary key.

Usage: spark-submit spark/jobs/silver.py --flow FLOW --run-id RUN_ID [--full-refresh]
Idempotent per run id; prints one summary line (rows in/out, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("silver"))
