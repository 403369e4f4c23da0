"""Benchmarks of the gateway against baselines measured in the same run.

``python -m bench`` (``make bench``) starts a mock partner federation, the
gateway and two baseline servers as separate processes, drives each with the
same external load generator (``wrk``, or the project's own aiohttp client
with ``--load python``), runs the in-process baselines (a raw ES256 loop, the
audit writer), prints a markdown table and prepends it to ``bench/RESULTS.md``.
See ``bench/README.md``.
"""
