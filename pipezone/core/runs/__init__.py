"""Running flows: their steps in dependency order, in one process or as spark-submit jobs, and the warm
Spark Connect server."""
