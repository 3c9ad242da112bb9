"""Alembic migrations of the banditq schema (``banditq db upgrade`` applies them)."""
