"""Change data capture: a source database's replication log read as changes (binlog, logical decoding)."""
