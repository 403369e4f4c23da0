"""The real services the adapters use are reachable (or the run says why not)."""

from __future__ import annotations

import pytest


@pytest.mark.redis
async def test_redis_answers_ping(redis_url: str) -> None:
    """A real Redis server answers PING."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


@pytest.mark.postgres
def test_postgres_fresh_database_is_empty(postgres_dsn: str) -> None:
    """A per-test PostgreSQL database exists and holds no tables."""
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        count = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert count is not None
    assert 0 == count[0]
