"""Alembic migrations for the state store; a package so setuptools ships env.py and the versions."""
