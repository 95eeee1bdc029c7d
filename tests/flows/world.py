"""Building blocks for the flow tests: Goldmane messages shaped as Felix reports them, mutual-TLS
certificates, a running stand-in with an exporter source against it, and the expected totals.

The expected totals are computed here, independently of ``exporter.flows``, from the stand-in's
ledger of ingested flows and the one rule the test flows are built to: the deciding hit of a flow
is its last enforced hit (tests put the hit whose action became the flow's action last, as
Felix does: felix/collector/flowlog/types.go ``newPolicySet`` keeps the path's order).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.flows.counters import FlowCounters
from exporter.flows.source import GoldmaneSource
from exporter.flows.tls import ClientFiles
from exporter.goldmane import api_pb2 as pb
from exporter.sim.goldmane import GoldmaneStandIn
from tests.access.certs import Pair, make_ca, make_cert

KIND_WORD = {pb.CalicoNetworkPolicy: "calico", pb.GlobalNetworkPolicy: "global",
             pb.NetworkPolicy: "k8s", pb.StagedNetworkPolicy: "staged",
             pb.StagedGlobalNetworkPolicy: "staged_global",
             pb.StagedKubernetesNetworkPolicy: "staged_k8s", pb.ClusterNetworkPolicy: "cluster",
             pb.Profile: "profile"}
"""The kind words of calico_network_policy_selected_pods (exporter.model.policy.POLICY_KINDS),
written out here."""
ACTION_WORD = {pb.Allow: "allow", pb.Deny: "deny", pb.Pass: "pass"}


def hit(name: str, *, kind: int = pb.CalicoNetworkPolicy, namespace: str = "ns", tier: str =
        "default", action: int = pb.Allow, index: int = 0, rule: int = 0,
        trigger: pb.PolicyHit | None = None) -> pb.PolicyHit:
    h = pb.PolicyHit(kind=kind, name=name, namespace=namespace, tier=tier, action=action,
                     policy_index=index, rule_index=rule)
    if trigger is not None:
        h.trigger.CopyFrom(trigger)
    return h


def end_of_tier(trigger: pb.PolicyHit, *, action: int = pb.Deny, index: int = 0,
                tier: str = "default") -> pb.PolicyHit:
    """An end-of-tier hit as HitFromString builds it: no name, the trigger holds the policy."""
    t = pb.PolicyHit(kind=trigger.kind, name=trigger.name, namespace=trigger.namespace,
                     tier=tier)
    return pb.PolicyHit(kind=pb.EndOfTier, tier=tier, action=action, policy_index=index,
                        rule_index=-1, trigger=t)


def flow(*, src: str = "a", dst: str = "b", reporter: int = pb.Src, action: int = pb.Allow,
         enforced: Iterable[pb.PolicyHit] = (), pending: Iterable[pb.PolicyHit] = (),
         started: int = 1, packets: int = 10, nbytes: int = 1000, port: int = 80,
         dest_type: int = pb.WorkloadEndpoint, start: int = 0, name: str = "pod") -> pb.Flow:
    f = pb.Flow(start_time=start, end_time=start, packets_in=packets // 2,
                packets_out=packets - packets // 2, bytes_in=nbytes // 2,
                bytes_out=nbytes - nbytes // 2, num_connections_started=started,
                num_connections_live=started)
    k = f.Key
    k.source_name, k.source_namespace, k.source_type = f"{name}-*", src, pb.WorkloadEndpoint
    k.dest_name, k.dest_namespace, k.dest_type = "dst-*", dst, dest_type
    k.dest_port, k.proto, k.reporter, k.action = port, "tcp", reporter, action
    k.policies.enforced_policies.extend(enforced)
    k.policies.pending_policies.extend(pending)
    return f


def labels_of(h: pb.PolicyHit, direction: str) -> tuple[str, str, str, str, str, str]:
    """The label set the test expects for a deciding hit (written out, not imported)."""
    action = ACTION_WORD[h.action]
    if h.kind == pb.EndOfTier:
        return (h.tier, KIND_WORD[h.trigger.kind], h.trigger.namespace, "__end_of_tier__",
                action, direction)
    if h.kind == pb.Profile:
        return (h.tier, "profile", h.namespace, "__profile__", action, direction)
    return (h.tier, KIND_WORD[h.kind], h.namespace, h.name, action, direction)


def expected_policy(flows: Iterable[pb.Flow]) -> dict[tuple[str, ...], list[int]]:
    """[connections, packets, bytes] per series for flows whose last enforced hit decided."""
    out: dict[tuple[str, ...], list[int]] = {}
    for f in flows:
        total = (f.num_connections_started + f.packets_in + f.packets_out + f.bytes_in
                 + f.bytes_out + f.num_connections_live)
        if not total or not f.Key.policies.enforced_policies:
            continue
        direction = "egress" if f.Key.reporter == pb.Src else "ingress"
        key = labels_of(f.Key.policies.enforced_policies[-1], direction)
        row = out.setdefault(key, [0, 0, 0])
        row[0] += f.num_connections_started
        row[1] += f.packets_in + f.packets_out
        row[2] += f.bytes_in + f.bytes_out
    return out


def snapshot(counters: FlowCounters) -> dict[tuple[str, ...], list[int]]:
    return {k: list(v) for k, v in counters.policy.items()}


def never_decreased(before: dict[tuple[str, ...], list[int]],
                    after: dict[tuple[str, ...], list[int]]) -> bool:
    return all(key in after and all(b <= a for b, a in zip(vals, after[key], strict=True))
               for key, vals in before.items())


@dataclass
class Certs:
    ca: Pair
    server: Pair
    client: Pair
    folder: Path

    def files(self) -> ClientFiles:
        return ClientFiles(cert=str(self.client.cert), key=str(self.client.key),
                           ca=str(self.ca.cert))


def make_certs(folder: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all made for the
    test (openssl); Goldmane's own are issued by the operator's CA the same way."""
    ca = make_ca(folder, "goldmane-ca")
    return Certs(ca, make_cert(folder, "goldmane", ca, server=True),
                 make_cert(folder, "calico-exporter", ca, server=False), folder)


def stand_in(certs: Certs, **kwargs: Any) -> GoldmaneStandIn:
    return GoldmaneStandIn(server_cert=certs.server.cert.read_bytes(),
                           server_key=certs.server.key.read_bytes(),
                           client_ca=certs.ca.cert.read_bytes(), **kwargs)


async def eventually(check: Callable[[], bool], *, within: float = 20.0) -> None:
    """Poll until ``check()`` holds (not a timing assertion: the limit only ends a hang)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@dataclass
class Rig:
    gm: GoldmaneStandIn
    source: GoldmaneSource
    counters: FlowCounters
    up: list[bool]

    async def streaming(self, streams: int = 1) -> None:
        """Wait until the exporter reads: its stream is open on the stand-in (registered there:
        a bucket rolled over before that is not sent to it, as in Goldmane), or, polling, it has
        learned where Goldmane's completed windows end."""
        if self.source.read == "poll":
            await eventually(lambda: self.source.connected.is_set()
                             and self.source.resume_from is not None)
            return
        await eventually(lambda: self.source.connected.is_set()
                         and self.gm.open_streams >= streams)

    async def settle(self, *, within: float = 20.0) -> None:
        """Wait until everything the stand-in holds as complete was read and committed: every
        streamed flow received, or two polls answered after this call."""
        if self.source.read == "poll":
            calls = self.gm.list_calls
            await eventually(lambda: self.gm.list_calls >= calls + 2
                             and not self.source.pending, within=within)
            return
        await eventually(lambda: self.gm.streamed == self.gm.queued
                         and self.counters.received >= self.gm.streamed
                         and not self.source.pending, within=within)


@asynccontextmanager
async def rig(certs: Certs, *, read: str = "stream", max_series: int = 10_000,
              namespace_pairs: bool = False, stall_timeout: float = 30.0, quiet: float = 0.2,
              files: ClientFiles | None = None, **gm_kwargs: Any) -> AsyncIterator[Rig]:
    """A stand-in on loopback and a GoldmaneSource following it (``read``: stream or poll,
    polling every 50 ms); both stopped on exit. Four empty windows are rolled over first, as in
    a Goldmane that has been running, so a poller's first call finds completed windows."""
    gm = stand_in(certs, **gm_kwargs)
    if read == "poll":
        gm.ingest([_marker()])
        gm.rollover(4)
        gm.ledger.clear()  # history: not counted, not expected
    port = await gm.start()
    counters = FlowCounters(max_series=max_series, namespace_pairs=namespace_pairs)
    up: list[bool] = []
    source = GoldmaneSource(address=f"127.0.0.1:{port}", files=files or certs.files(),
                            counters=counters, mark=up.append, stall_timeout=stall_timeout,
                            quiet=quiet, backoff_initial=0.05, backoff_max=0.2,
                            files_check_interval=0.2, read=read, poll_interval=0.05)
    task = asyncio.create_task(source.run(), name="goldmane-flows")
    try:
        yield Rig(gm, source, counters, up)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gm.stop()


def _marker() -> pb.Flow:
    """A flow from before the exporter started (a poller's first call learns from it where the
    completed windows end, and counts nothing of it)."""
    return flow(name="before-start", enforced=[hit("history")])


def reasons(counter: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counter.items() if v}
