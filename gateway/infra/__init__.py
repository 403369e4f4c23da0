"""Plumbing the features share: storage, keys, signing, batching.

* ``sql``: one SQL layer for every store, SQLite or PostgreSQL, run off the event loop
* ``migrations``: each store's versioned schema, brought up to date when it opens
* ``sqlite``: how an SQLite file is opened (WAL, durability, busy timeout)
* ``keyfiles``, ``signing``: the gateway's own keys and the signers made from them
* ``crypto_thread``: signature work beside the event loop, in batches
* ``coalesce``, ``redislink``: concurrent calls sharing one round trip
* ``datafolder``: the instance's data folder, made only on purpose
* ``metrics``: the families of samples each service reports on ``/metrics``
"""
