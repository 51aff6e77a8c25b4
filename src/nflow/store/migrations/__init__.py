"""Alembic revisions of the nflow database; run by :mod:`nflow.store._migrate`, not imported."""
