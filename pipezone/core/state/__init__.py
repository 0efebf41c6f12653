"""The state store (run history, watermarks, layer progress, registries, leases, quality results) and its
migrations: the second half of the commit protocol (Delta first, state second)."""
