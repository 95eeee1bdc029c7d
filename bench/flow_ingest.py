"""Goldmane flow ingest: flow updates per CPU-second, as ratios against decoding alone, and the
counters' memory with 10,000 policies, in one run.

Three measurements over the same ``--flows`` FlowResults (each decided by one of
``--policies`` policies, traces of two hits, both reporters, windows of ``--window`` flows):

- ``decode``: ``FlowResult.FromString`` on every serialized message: the floor.
- ``ingest``: decode plus the exporter's hot path (``WindowTracker.receive``, commits included).
- ``ingest_named``: the same with the policy-name lookup the cluster role gives the counters
  (``FlowCounters.names``, here a dict of every policy as ``PolicyIndex.shown`` answers), which
  runs once per label set and window.
- ``stream``: end to end: a Goldmane stand-in in a child process streams the messages over
  mutual TLS on loopback, the exporter's ``GoldmaneSource`` follows the stream; this process's
  CPU time (gRPC, decoding, counting) from the first message to the last commit.
- ``poll``: end to end, ``--goldmane-read poll``: the stand-in holds the same flows in its
  buckets, the source polls ``Flows.List`` every 50 ms; this process's CPU time until every flow
  is counted (the stand-in's own aggregation runs in the child and is not measured).

``memory``: the bytes traced (tracemalloc) in the counters after ingesting one flow for every
one of ``--memory-policies`` policies in both directions and actions, and this process's
resident memory before and after. Prints one JSON line::

    .venv/bin/python -m bench.flow_ingest [--flows 200000] [--policies 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from exporter.flows.counters import FlowCounters, PolicyNames
from exporter.flows.ingest import WindowTracker
from exporter.goldmane import api_pb2 as pb

BUDGET = 20_000
"""Flow updates per CPU-second the exporter must sustain end to end (issue 17)."""


def make_results(n: int, policies: int, window: int, start: int = 1_800_000_000
                 ) -> list[pb.FlowResult]:
    out = []
    for i in range(n):
        w = start + 15 * (i // window)
        reporter = pb.Src if i % 2 else pb.Dst
        action = pb.Deny if i % 7 == 0 else pb.Allow
        f = pb.Flow(start_time=w, end_time=w + 15, packets_in=3 + i % 5, packets_out=2,
                    bytes_in=300 + i % 100, bytes_out=200, num_connections_started=1 + i % 2,
                    num_connections_live=1)
        k = f.Key
        k.source_name, k.source_namespace = f"client-{i % 5000}-*", f"ns{i % 50}"
        k.dest_name, k.dest_namespace = f"server-{i % 997}-*", f"ns{(i + 7) % 50}"
        k.source_type = k.dest_type = pb.WorkloadEndpoint
        k.dest_port, k.proto, k.reporter, k.action = 8000 + i % 100, "tcp", reporter, action
        p = i % policies
        k.policies.enforced_policies.add(kind=pb.GlobalNetworkPolicy, name="platform-pass",
                                         tier="platform", action=pb.Pass, policy_index=0)
        k.policies.enforced_policies.add(kind=pb.CalicoNetworkPolicy, name=f"policy-{p}",
                                         namespace=f"ns{p % 50}", tier="default", action=action,
                                         policy_index=1, rule_index=p % 4)
        out.append(pb.FlowResult(id=i + 1, flow=f))
    return out


def measure_decode(raw: list[bytes]) -> float:
    start = time.process_time()
    parse = pb.FlowResult.FromString
    for b in raw:
        parse(b)
    return time.process_time() - start


def policy_names(policies: int) -> PolicyNames:
    """``PolicyIndex.shown`` over the bench's policies (stored as ``default.<name>`` by a Calico
    before 3.32, shown without the prefix), as a dict lookup."""
    shown = {("calico", f"ns{p % 50}", f"default.policy-{p}"): ("default", f"policy-{p}")
             for p in range(policies)}
    shown[("global", "", "platform-pass")] = ("platform", "platform-pass")
    return lambda kind, namespace, name: shown.get((kind, namespace, name))


def measure_ingest(raw: list[bytes], names: PolicyNames | None = None
                   ) -> tuple[float, FlowCounters]:
    counters = FlowCounters(max_series=1_000_000, names=names)
    tracker = WindowTracker(counters, resume_from=None)
    start = time.process_time()
    parse = pb.FlowResult.FromString
    receive = tracker.receive
    for b in raw:
        receive(parse(b))
    tracker.quiet()
    return time.process_time() - start, counters


def _serve_poll(folder: str, n: int, policies: int, window: int,
                port_q: multiprocessing.Queue[int], go: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    """Child process: a stand-in that files the flows into its buckets once the client polls."""
    from exporter.sim.goldmane import GoldmaneStandIn

    async def run() -> None:
        d = Path(folder)
        gm = GoldmaneStandIn(server_cert=(d / "goldmane.crt").read_bytes(),
                             server_key=(d / "goldmane.key").read_bytes(),
                             client_ca=(d / "client-ca.crt").read_bytes(), keep_ledger=False)
        marker = make_results(1, 1, 1)[0].flow
        marker.start_time = marker.end_time = 0
        gm.ingest([marker])
        gm.rollover(4)
        port = await gm.start()
        flows = [r.flow for r in make_results(n, policies, window)]
        port_q.put(port)
        while gm.list_calls < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        go.wait()
        for i in range(0, n, window):
            batch = flows[i:i + window]
            for f in batch:
                f.start_time = f.end_time = 0
            gm.ingest(batch)
            gm.rollover()
            await asyncio.sleep(0)
        gm.rollover(3)
        await asyncio.sleep(60)

    asyncio.run(run())


def _serve(folder: str, n: int, policies: int, window: int, port_q: multiprocessing.Queue[int],
           go: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    """Child process: a stand-in holding the messages, streaming them once a client is there."""
    from exporter.sim.goldmane import GoldmaneStandIn

    async def run() -> None:
        d = Path(folder)
        gm = GoldmaneStandIn(server_cert=(d / "goldmane.crt").read_bytes(),
                             server_key=(d / "goldmane.key").read_bytes(),
                             client_ca=(d / "client-ca.crt").read_bytes(), keep_ledger=False)
        port = await gm.start()
        batches: list[list[pb.FlowResult]] = []
        results = make_results(n, policies, window)
        for i in range(0, n, window):
            batches.append(results[i:i + window])
        port_q.put(port)
        while gm.open_streams < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        go.wait()
        for batch in batches:
            gm.push(batch)
        await asyncio.sleep(600)  # the parent terminates this process when it has counted all

    asyncio.run(run())


async def measure_stream(folder: Path, n: int, policies: int, window: int, *,
                         read: str = "stream") -> tuple[float, float]:
    from exporter.flows.source import GoldmaneSource
    from exporter.flows.tls import ClientFiles

    ctx = multiprocessing.get_context("spawn")
    port_q: multiprocessing.Queue[int] = ctx.Queue()
    go = ctx.Event()
    serve = _serve if read == "stream" else _serve_poll
    child = ctx.Process(target=serve, args=(str(folder), n, policies, window, port_q, go))
    child.start()
    port = await asyncio.get_running_loop().run_in_executor(None, port_q.get)
    counters = FlowCounters(max_series=1_000_000)
    source = GoldmaneSource(address=f"127.0.0.1:{port}", counters=counters, quiet=0.5,
                            read=read, poll_interval=0.05,
                            files=ClientFiles(cert=str(folder / "calico-exporter.crt"),
                                              key=str(folder / "calico-exporter.key"),
                                              ca=str(folder / "goldmane-ca.crt")))
    task = asyncio.create_task(source.run(), name="goldmane-flows")
    try:
        await source.connected.wait()
        await asyncio.sleep(0.5)
        wall, cpu = time.monotonic(), time.process_time()
        go.set()
        # Done when every connection is counted (a poll may sum a key's windows into one result).
        expected = sum(1 + i % 2 for i in range(n))
        while sum(v[0] for v in counters.policy.values()) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu
        wall = time.monotonic() - wall
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        child.terminate()
        child.join(timeout=30)
    return cpu, wall


def measure_memory(policies: int) -> dict[str, float]:
    results = make_results(policies * 4, policies, policies * 4)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    counters = FlowCounters(max_series=1_000_000)
    tracker = WindowTracker(counters, resume_from=None)
    for r in results:
        tracker.receive(r)
    tracker.quiet()
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"memory_policies": policies, "memory_series": len(counters.policy),
            "counters_mb": round(traced / 1e6, 2),
            "bytes_per_series": round(traced / max(1, len(counters.policy))),
            "peak_rss_mb": round(max(rss_before,
                                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
                                 / 1024, 1)}


def make_certs(folder: Path) -> None:
    """Self-signed server and client certificates, each the other's CA (as the demo does)."""
    from exporter.sim.tls import self_signed

    cert, key = self_signed("goldmane", ("localhost", "127.0.0.1"))
    client_cert, client_key = self_signed("calico-exporter", ("calico-exporter",), client=True)
    (folder / "goldmane.crt").write_bytes(cert)
    (folder / "goldmane.key").write_bytes(key)
    (folder / "goldmane-ca.crt").write_bytes(cert)
    (folder / "calico-exporter.crt").write_bytes(client_cert)
    (folder / "calico-exporter.key").write_bytes(client_key)
    (folder / "client-ca.crt").write_bytes(client_cert)


def main(flows: int, policies: int, window: int, memory_policies: int) -> dict[str, object]:
    results = make_results(flows, policies, window)
    raw = [r.SerializeToString() for r in results]
    del results
    decode = min(measure_decode(raw) for _ in range(3))
    ingest = min(measure_ingest(raw)[0] for _ in range(3))
    names = policy_names(policies)
    ingest_named = min(measure_ingest(raw, names)[0] for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        make_certs(Path(tmp))
        stream_cpu, stream_wall = asyncio.run(measure_stream(Path(tmp), flows, policies, window))
        poll_cpu, _ = asyncio.run(measure_stream(Path(tmp), flows, policies, window, read="poll"))
    out: dict[str, object] = {
        "flows": flows, "policies": policies, "window": window,
        "decode_per_cpu_s": round(flows / decode),
        "ingest_per_cpu_s": round(flows / ingest),
        "ingest_ratio_vs_decode": round(decode / ingest, 3),
        "ingest_named_per_cpu_s": round(flows / ingest_named),
        "ingest_named_ratio_vs_ingest": round(ingest / ingest_named, 3),
        "stream_per_cpu_s": round(flows / stream_cpu),
        "stream_ratio_vs_decode": round(decode / stream_cpu, 3),
        "stream_per_wall_s": round(flows / stream_wall),
        "poll_per_cpu_s": round(flows / poll_cpu),
        "poll_ratio_vs_decode": round(decode / poll_cpu, 3),
        "budget_per_cpu_s": BUDGET,
    }
    out.update(measure_memory(memory_policies))
    out["ok"] = out["poll_per_cpu_s"] >= BUDGET  # type: ignore[operator]
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flows", type=int, default=200_000)
    p.add_argument("--policies", type=int, default=3000)
    p.add_argument("--window", type=int, default=5000)
    p.add_argument("--memory-policies", type=int, default=10_000)
    a = p.parse_args()
    print(json.dumps(main(a.flows, a.policies, a.window, a.memory_policies)))
