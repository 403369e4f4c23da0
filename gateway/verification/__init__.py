"""Verifying partners' licences for local systems.

* ``service``: one licence (or a batch) in; a verdict, a receipt and an audit record out
* ``routes``: ``POST /v1/verifications`` and ``/v1/verifications/batch``
* ``cache``: verdicts in process and in Redis, keyed by the trust list they were judged on
* ``status``: partners' status lists, fetched, checked and kept
"""
