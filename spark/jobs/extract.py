"""spark-submit entry point: Extract a flow's source window over JDBC into raw (one immutable Delta batch).

Usage: spark-submit spark/jobs/extract.py --flow FLOW --run-id RUN_ID [--full-refresh]
Idempotent per run id; prints one summary line (rows in/out, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("extract"))
