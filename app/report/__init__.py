"""Reports of one campaign: data from the reader views, figures, the HTML file.

Offline tooling: the client, scheduler and worker never import it.
"""
