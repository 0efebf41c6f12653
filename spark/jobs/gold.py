"""spark-submit entry point: Rebuild the flow's gold tables from its Spark SQL over silver and gold tables.

Usage: spark-submit spark/jobs/gold.py --flow FLOW --run-id RUN_ID [--full-refresh]
Idempotent per run id; prints one summary line (rows in/out, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("gold"))
