"""The JDBC family: relational databases read with Spark's JDBC reader (and connectorx for bulk first
loads), one module per database."""
