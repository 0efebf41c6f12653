"""The lake: where tables live, Delta writes and logs, the Arrow/delta-rs write path, row hashes, schema drift."""
