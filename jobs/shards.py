"""Tenant → shard queue by rendezvous (highest-random-weight) hashing.

Each tenant goes to the shard with the highest hash of (shard, tenant). Adding a
shard moves only the tenants the new shard now wins; removing one moves only
its own tenants. The hash is stable across processes and machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

QUERY_QUEUE_PREFIX = "query."


def _weight(shard: str, tenant_key: str) -> int:
    digest = hashlib.blake2b(f"{shard}\x00{tenant_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_for(tenant_key: str | int, shards: Sequence[str]) -> str:
    """The shard that owns `tenant_key` among `shards`."""
    if not shards:
        raise ValueError("no shards configured")
    key = str(tenant_key)
    return max(shards, key=lambda shard: (_weight(shard, key), shard))


def query_queue(shard: str) -> str:
    """The Dramatiq queue a shard's query stage listens on (`dramatiq jobs -Q query.NAME`)."""
    return QUERY_QUEUE_PREFIX + shard
