"""The ``banditq`` command line: one module per group of commands, registered on import.

``cli`` is the Typer app; ``main`` its entry point (errors print one line unless --debug).
"""

from app.cli import campaigns, database, offline, plugins, services, store  # noqa: F401
from app.cli.base import cli, main

__all__ = ["cli", "main"]
