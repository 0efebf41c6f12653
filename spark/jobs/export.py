"""spark-submit entry point: Write one of the flow's exports (a silver or gold table) into its database.

Usage: spark-submit spark/jobs/export.py --flow FLOW --step export_NAME --run-id RUN_ID [--full-refresh]
Exactly once per lake version (the destination holds a marker written with the data); prints one summary
line (rows written and deleted, duration) or one error line.
"""

import sys

from pipezone.core.steps.runner import job_main

if __name__ == "__main__":
    sys.exit(job_main("export"))
