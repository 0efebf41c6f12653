"""spark-submit entry point: Evaluate the flow's quality checks and record them in the state store.

Usage: spark-submit spark/jobs/quality.py --flow FLOW --run-id RUN_ID [--full-refresh]
Idempotent per run id; prints one summary line (rows in/out, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("quality"))
