"""The numerical core every solver trial kind runs on (worker side).

``csr`` prepares a matrix once (int32 indices, contiguous float64, the diagonal and its
inverse), ``kernels`` holds the compiled CPU loops (numba), ``sor`` and ``pcg`` the outer
iterations with exact stopping rules, ``multicolor`` the colour-parallel SOR (torch, CPU or
CUDA), ``generators`` the PDE matrices built on the worker from a small spec, and ``cache``
a per-process, byte-bounded cache of prepared matrices. No dense matrix anywhere.
"""
