"""Churn driver: the steady change of a live cluster, applied to the emulator in-process.

It continues the cluster :func:`bench.generate.generate` made, writing objects in the shapes Calico
and Kubernetes write them:

- pods come and go (delete: pod, then the IPAM block release, then the handle; create: handle,
  block allocation, pod), keeping the population constant;
- calico-node refreshes every CalicoNodeStatus at its own ``spec.updatePeriodSeconds`` (phases
  spread over the period), with routes that differ a little between reports;
- policies are edited (a port changes);
- one BGP session flaps (down, then up again), which rewrites both nodes' statuses at once.

It also produces bursts (:meth:`Churn.burst`): many writes of one resource type back to back, to
measure how fast a watcher consumes events. Everything runs on the emulator's event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import generate as g
from exporter.sim.apiserver import ApiServer

CNS = "caliconodestatuses.crd.projectcalico.org"
BURST_KINDS = ("pods", "nodes", "caliconodestatuses", "networkpolicies", "ipamblocks")


@dataclass
class ChurnRates:
    """Writes per second of each kind of change (status refreshes follow the CNS period)."""

    pods_per_s: float
    policies_per_s: float
    flap_after: float = 0.3
    """Fraction of the churn window after which the peer goes down (up again at twice that)."""

    @classmethod
    def for_spec(cls, spec: g.BenchSpec) -> ChurnRates:
        return cls(pods_per_s=max(2.0, spec.pods / 1000),
                   policies_per_s=max(0.5, spec.policies / 300))


@dataclass
class ChurnStats:
    pod_creates: int = 0
    pod_deletes: int = 0
    status_writes: int = 0
    policy_edits: int = 0
    flaps: int = 0
    writes: int = 0
    lag_max_s: float = 0.0
    """Largest delay of a status refresh behind its schedule (the driver keeping up)."""
    errors: list[str] = field(default_factory=list)


class Churn:
    """Drives changes into one emulator holding one generated cluster."""

    def __init__(self, api: ApiServer, gen: g.Generated, *, seed: int = 7) -> None:
        self.api = api
        self.gen = gen
        self.spec = gen.spec
        self.rng = random.Random(seed)
        self.stats = ChurnStats()
        self.blocks = gen.blocks
        self.pods: dict[tuple[str, str], tuple[int, int, int]] = dict(gen.pod_slots)
        self.pod_keys: list[tuple[str, str]] = list(self.pods)
        self.pods_by_node: dict[int, list[str]] = {}
        for j, ordinal, _serial in self.pods.values():
            self.pods_by_node.setdefault(j % self.spec.nodes, []).append(g.block_ip(j, ordinal))
        self.serial = self.spec.pods + 1
        self.ticks: dict[int, int] = {}
        self.down: dict[int, frozenset[int]] = {}
        self.policy_edits: dict[int, int] = {}
        self.burst_serial = 0

    # ------------------------------------------------------------------ single changes

    def delete_pod(self) -> None:
        index = self.rng.randrange(len(self.pod_keys))
        key = self.pod_keys[index]
        self.pod_keys[index] = self.pod_keys[-1]
        self.pod_keys.pop()
        j, ordinal, serial = self.pods.pop(key)
        self.api.delete("pods", key[1], key[0])
        g.release(self.blocks[j], ordinal)
        self.api.update(self.blocks[j])
        self.api.delete("ipamhandles", g.handle_id(serial).lower())
        ips = self.pods_by_node.get(j % self.spec.nodes, [])
        ip = g.block_ip(j, ordinal)
        if ip in ips:
            ips.remove(ip)
        self.stats.pod_deletes += 1
        self.stats.writes += 3

    def create_pod(self) -> None:
        spec = self.spec
        for _ in range(spec.blocks):
            j = self.rng.randrange(spec.blocks)
            if len(self.blocks[j]["spec"]["unallocated"]) > 4:
                break
        else:
            return
        ordinal = self.blocks[j]["spec"]["unallocated"][0]
        serial = self.serial
        self.serial += 1
        node_index = j % spec.nodes
        ns = g.namespace_name(self.rng.randrange(spec.namespaces))
        name = f"churn-{serial:07d}"
        ip = g.block_ip(j, ordinal)
        self.api.create(g.ipam_handle(serial, g.block_cidr(j)))
        g.allocate(self.blocks[j], ordinal, handle=g.handle_id(serial), namespace=ns, pod=name,
                   node=g.node_name(node_index))
        self.api.update(self.blocks[j])
        self.api.create(g.pod(spec, serial, ns=ns, name=name, node_index=node_index, ip=ip,
                              serial=serial))
        self.pods[(ns, name)] = (j, ordinal, serial)
        self.pod_keys.append((ns, name))
        self.pods_by_node.setdefault(node_index, []).append(ip)
        self.stats.pod_creates += 1
        self.stats.writes += 3

    def write_status(self, i: int) -> None:
        """calico-node on node ``i`` reports: a status that differs from the last one."""
        tick = self.ticks.get(i, 0) + 1
        self.ticks[i] = tick
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj = g.calico_node_status(self.spec, i, pods_by_node=self.pods_by_node,
                                   down=self.down.get(i, frozenset()), tick=tick,
                                   last_updated=now)
        self.api.update(obj)
        self.stats.status_writes += 1
        self.stats.writes += 1

    def edit_policy(self) -> None:
        i = self.rng.randrange(self.spec.policies)
        edit = self.policy_edits.get(i, 0) + 1
        self.policy_edits[i] = edit
        self.api.update(g.policy(self.spec, i, edit=edit))
        self.stats.policy_edits += 1
        self.stats.writes += 1

    def set_session(self, a: int, b: int, *, up: bool) -> None:
        for me, other in ((a, b), (b, a)):
            down = set(self.down.get(me, frozenset()))
            if up:
                down.discard(other)
            else:
                down.add(other)
            self.down[me] = frozenset(down)
            self.write_status(me)
        self.stats.flaps += 0 if up else 1

    # ------------------------------------------------------------------ steady churn

    async def run(self, seconds: float, rates: ChurnRates) -> ChurnStats:
        """Churn for ``seconds``: pods, policy edits, status refreshes, one peer flap."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + seconds
        period = float(self.spec.update_period)
        n = self.spec.nodes
        # (due time, kind, node index): status refreshes spread over the period.
        queue: list[tuple[float, int, int]] = [
            (start + period * (i + 0.5) / n, 0, i) for i in range(n)]
        heapq.heapify(queue)
        next_pod = start
        next_policy = start
        flap_down = start + seconds * rates.flap_after
        flap_up = start + 2 * seconds * rates.flap_after
        flapped = 0
        peer_a = n - 1 if n > self.spec.reflector_count else 0
        peer_b = 0 if peer_a != 0 else min(1, n - 1)
        create_next = False
        while True:
            now = loop.time()
            if now >= end:
                break
            try:
                while queue and queue[0][0] <= now:
                    due, _, i = heapq.heappop(queue)
                    self.stats.lag_max_s = max(self.stats.lag_max_s, now - due)
                    self.write_status(i)
                    heapq.heappush(queue, (due + period, 0, i))
                while next_pod <= now:
                    if create_next or not self.pod_keys:
                        self.create_pod()
                    else:
                        self.delete_pod()
                    create_next = not create_next
                    next_pod += 1.0 / rates.pods_per_s
                while next_policy <= now:
                    self.edit_policy()
                    next_policy += 1.0 / rates.policies_per_s
                if flapped == 0 and now >= flap_down and peer_a != peer_b:
                    self.set_session(peer_a, peer_b, up=False)
                    flapped = 1
                if flapped == 1 and now >= flap_up:
                    self.set_session(peer_a, peer_b, up=True)
                    flapped = 2
            except Exception as exc:  # keep churning; the harness reports errors
                self.stats.errors.append(repr(exc))
                if len(self.stats.errors) > 50:
                    raise
            wake = min(queue[0][0] if queue else end, next_pod, next_policy, end)
            await asyncio.sleep(max(0.0, min(wake - loop.time(), 0.05)))
        if flapped == 1:
            self.set_session(peer_a, peer_b, up=True)
        return self.stats

    # ------------------------------------------------------------------ bursts

    async def burst(self, kind: str, count: int, *, batch: int = 200) -> dict[str, Any]:
        """``count`` MODIFIED events of one resource type, written back to back in batches
        (yielding between batches so watches stream while we write)."""
        if kind not in BURST_KINDS:
            raise ValueError(f"unknown burst kind {kind!r}")
        rv_before = self.api.resource_version
        started = time.perf_counter()
        spec = self.spec
        done = 0
        while done < count:
            for _ in range(min(batch, count - done)):
                self.burst_serial += 1
                n = self.burst_serial
                if kind == "pods":
                    # Mostly status changes (a container restarts), one in ten a label change.
                    ns, name = self.pod_keys[n % len(self.pod_keys)]
                    if n % 10:
                        change: dict[str, Any] = {"status": {"containerStatuses":
                                                  g.container_statuses(self.pods[(ns, name)][2],
                                                                       restarts=n)}}
                    else:
                        change = {"metadata": {"labels": {"bench-rev": str(n)}}}
                    self.api.patch("pods", name, change, namespace=ns)
                elif kind == "nodes":
                    self.api.patch("nodes", g.node_name(n % spec.nodes),
                                   {"metadata": {"labels": {"bench-rev": str(n)}}})
                elif kind == "caliconodestatuses":
                    self.write_status(n % spec.nodes)
                elif kind == "networkpolicies":
                    i = n % spec.policies
                    if i % 3 == 0:
                        i += 1  # Calico ones (the k8s ones are a third)
                    if i >= spec.policies:
                        i = 1 % spec.policies
                    self.policy_edits[i] = self.policy_edits.get(i, 0) + 1
                    self.api.update(g.policy(spec, i, edit=self.policy_edits[i] + n))
                else:  # ipamblocks: the sequence number moves, as after any IPAM write
                    block = self.blocks[n % spec.blocks]
                    block["spec"]["sequenceNumber"] += 1
                    self.api.update(block)
                done += 1
            await asyncio.sleep(0)
        return {"kind": kind, "events": count, "rv_before": rv_before,
                "rv_after": self.api.resource_version,
                "write_s": round(time.perf_counter() - started, 3)}
