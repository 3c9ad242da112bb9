"""What every side needs of the solvers: ``csr`` prepares and checks a matrix once (int32
indices, contiguous float64, the diagonal and its inverse), ``generators`` builds the PDE
matrices from a small spec (on the worker, and on the client for a system's features). The
compiled kernels and the outer iterations are the worker's: :mod:`workers.solvers`.
"""
