"""The embedded demo: a small SQLite retail shop and its change batches."""
