"""The numerical core the worker's solver kinds run on (worker side: numba, and torch for the
multicolour ordering).

``kernels`` holds the compiled CPU loops (numba), ``sor`` and ``pcg`` the outer iterations
with exact stopping rules, ``multicolor`` the colour-parallel SOR (torch, CPU or CUDA), and
``cache`` a per-process, byte-bounded cache of prepared matrices. What the client also needs
(``csr``: preparing and checking a matrix; ``generators``: the PDE matrices built from a small
spec) lives in :mod:`tasks.solvers`. No dense matrix anywhere.
"""
