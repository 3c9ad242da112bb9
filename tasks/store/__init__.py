"""The array store: large values (matrices, right-hand sides, solutions) by reference.

Content-addressed (sha256 of a canonical binary encoding), immutable, written once; every
read checks the hash. Backends: a directory (the embedded default, or a shared mount) and
PostgreSQL (chunked ``bytea``, the default when the database is PostgreSQL). Messages and
rows carry a :func:`blobs.ref` (hash, kind, shape, bytes), never the array.
"""
