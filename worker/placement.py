"""Which account lives on which shard, as check-config, /status and esw_account_shard show it.

Accounts are placed by hash (worker.emit.shard_of, murmur2), not spread evenly: a few accounts
often share shards while others stay empty, and a replica owning only empty shards does nothing.
Useful replicas are at most the occupied shards, plus one spare for rollouts. An account spread over
several shards (`accounts[].spread`) is placed on each of them, its home first.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from worker.config import Config
from worker.emit import shards_of


@attrs.frozen
class Placement:
    provider: str
    account: str
    shard: int
    home: bool = True     # False: one of a spread account's other shards (it is polled from its home)


@attrs.frozen
class ShardMap:
    shards: int
    placements: tuple[Placement, ...]

    @classmethod
    def from_config(cls, config: Config) -> ShardMap:
        shards = config.kafka.shards
        return cls(shards, tuple(Placement(a.provider.value, a.name, p, k == 0)
                                 for a in config.accounts
                                 for k, p in enumerate(shards_of(a.provider.value, a.name, a.spread, shards))))

    @property
    def occupied(self) -> int:
        return len({p.shard for p in self.placements})

    @property
    def useful_replicas(self) -> int:
        """At most one replica per occupied shard, plus a spare for rollouts (never more than the
        shards: a replica beyond them owns nothing)."""
        return min(self.shards, self.occupied + 1)

    def crowding(self) -> str | None:
        """A warning when accounts share a shard while other shards are empty; None otherwise."""
        shared = len(self.placements) - self.occupied
        if shared == 0 or self.occupied == self.shards:
            return None
        accounts = len({(p.provider, p.account) for p in self.placements})
        return (f"WARNING: {accounts} accounts share {self.occupied} of {self.shards} shards "
                f"({self.shards - self.occupied} empty): useful replicas <= occupied shards, plus one spare "
                f"for rollouts, here at most {self.useful_replicas}; more replicas own nothing and only add "
                f"rebalances")

    def lines(self) -> list[str]:
        """check-config's report: one line per account (provider, name, shard), then the count."""
        width_p = max((len(p.provider) for p in self.placements), default=0)
        width_a = max((len(p.account) for p in self.placements), default=0)
        out = [f"  {p.provider:<{width_p}}  {p.account:<{width_a}}  shard {p.shard}" + ("" if p.home else " (spread)")
               for p in sorted(self.placements, key=lambda p: (p.shard, p.provider, p.account))]
        out.append(f"occupied shards: {self.occupied} of {self.shards}")
        return out

    def status(self, owned: Collection[int]) -> list[dict[str, object]]:
        """/status `accounts`: each account's shard (a spread account: each of its shards, `home`
        the one that polls it), and whether this replica is assigned it."""
        return [{"provider": p.provider, "account": p.account, "shard": p.shard, "home": p.home,
                 "owned_here": p.shard in owned}
                for p in self.placements]
