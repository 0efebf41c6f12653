"""Alembic revisions of the state store (a package only so setuptools installs them)."""
