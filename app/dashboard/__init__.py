"""``banditq dashboard``: a read-only web application over the reader views.

Offline tooling like :mod:`app.report` (whose data and figures it serves); the client,
scheduler and worker never import it.
"""
