"""Dispatch puts each run's query stage on its tenant's shard queue, in real Redis."""

from __future__ import annotations

import json

import dramatiq
import pytest
import redis

from jobs.broker import build_broker
from jobs.shards import shard_for
from models.settings import get_settings


@pytest.fixture
def sharded_broker(redis_namespace: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HERALD_SHARDS", "shard-a,shard-b,shard-c")
    get_settings.cache_clear()
    previous = dramatiq.get_broker()
    broker = build_broker(get_settings())
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)
    broker.close()


@pytest.mark.parametrize("count", [5, 100])  # one by one, and the parallel path
def test_runs_go_to_their_tenants_shard_queues(sharded_broker, redis_namespace, redis_client: redis.Redis,
                                               count: int) -> None:
    from jobs.dispatch import dispatch_runs

    runs = [(1000 + i, i % 17) for i in range(count)]  # (run id, tenant id)
    dispatch_runs(runs)

    shards = ["shard-a", "shard-b", "shard-c"]
    expected = {s: sorted(r for r, t in runs if shard_for(t, shards) == s) for s in shards}
    for shard in shards:
        queue = f"{redis_namespace}:query.{shard}"
        ids = [m.decode() for m in redis_client.lrange(queue, 0, -1)]
        bodies = [json.loads(redis_client.hget(f"{queue}.msgs", i)) for i in ids]
        assert all(b["actor_name"] == "query_stage" for b in bodies)
        assert sorted(b["args"][0] for b in bodies) == expected[shard]
    assert sum(map(len, expected.values())) == count
