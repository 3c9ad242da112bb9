"""Worker side of the built-in trial kinds: what runs a trial (heavy imports live here)."""
