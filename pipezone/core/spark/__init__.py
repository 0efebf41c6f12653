"""Spark itself: the session (local, cluster or Spark Connect), the jars it needs, and JVM errors as one line."""
