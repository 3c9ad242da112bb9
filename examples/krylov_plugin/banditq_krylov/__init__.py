"""An example banditq plugin: the ``scipy-gmres`` trial kind (see README.md)."""
