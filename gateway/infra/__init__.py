"""Plumbing the features share: storage, keys, signing, batching.

* ``sqlite``: SQLite connections run off the event loop
* ``keyfiles``, ``signing``: the gateway's own keys and the signers made from them
* ``crypto_thread``: signature work beside the event loop, in batches
* ``coalesce``, ``redislink``: concurrent calls sharing one round trip
* ``datafolder``: the instance's data folder, made only on purpose
* ``metrics``: the families of samples each service reports on ``/metrics``
"""
