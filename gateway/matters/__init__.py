"""Matter codes translated between regional catalogues.

* ``service``: the registry loaded from the data folder, ``translate`` and its metrics
* ``routes``: ``POST /v1/matters/translate`` (and batch), catalogue reads
"""
