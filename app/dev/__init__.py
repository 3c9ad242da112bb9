"""Development tools: a local cluster of scheduler and worker processes (local) and the
``banditq demo`` job on it (demo)."""
