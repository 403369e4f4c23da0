"""Local systems' API keys and operators' tokens.

* ``store``: the identity store: lookup, expiry, rotation, revocation
* ``routes``: ``/v1/admin/credentials`` for the roles allowed
"""
