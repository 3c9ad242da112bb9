"""``python -m app.cli``: the same as the ``banditq`` command."""

from app.cli import main

main()
