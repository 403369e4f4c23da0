"""The operator-managed list of trust anchors.

* ``service``: proposals, dual-controlled approval, versions, export and import, the stores
* ``state``: the snapshot every request is judged on
* ``sync``: a change made on one instance served by all of them
* ``routes``: ``/v1/admin/...`` for operators and approvers
"""
