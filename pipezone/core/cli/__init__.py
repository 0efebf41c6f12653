"""The `pipezone` command."""
