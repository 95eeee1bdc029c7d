"""Policy index event cost against the number of namespaces an event does not touch.

Builds a 1x cluster (30,000 pods and 3,000 policies over 100 namespaces: 29 Kubernetes and Calico
policies per namespace plus 100 GlobalNetworkPolicies) and a 10x cluster with the same
per-namespace density and ten times the namespaces (the GNPs stay 100), parsed from raw objects
into real stores and wired with ``wire_policy_index``. In each it times:

- a pod event: a pod of one namespace relabelled (its selection changes), the median CPU time
  per event over repeated runs of ``--events`` events;
- a namespaced policy event: one Calico policy's selector edited back and forth;
- a namespace event: one namespace's labels changed (GNP namespace selectors re-evaluated);
- a service account event: one service account's labels changed (the pods running as it
  re-evaluated against the policies whose selectors read ``pcsa.*`` labels).

Prints one JSON line with the per-event times, the 10x/1x ratios (acceptance: the pod event
ratio stays near 1, since an event only looks at its own namespace and the global policies),
the build times and the peak RSS after the 1x build (stores + index, as in the exporter)::

    .venv/bin/python -m bench.policy_index [--pods 30000] [--policies 3000] [--namespaces 100]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from exporter.model.core import parse_namespace, parse_pod, parse_service_account
from exporter.model.policy import (
    parse_calico_network_policy,
    parse_global_network_policy,
    parse_k8s_network_policy,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.index import PolicyIndex
from exporter.policy.wiring import PolicyStores, wire_policy_index

APPS = 10
TIERS = ("frontend", "backend", "cache")
TEAMS = 10


def _pod(ns: str, i: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": f"pod-{i:05d}",
                     "labels": {"app": f"app-{i % APPS}", "tier": TIERS[i % 3],
                                "pod-template-hash": f"h{i % 7}"}},
        "spec": {"nodeName": f"node-{i % 500:03d}", "serviceAccountName": f"sa-{i % 3}"},
        "status": {"phase": "Running", "podIP": "198.18.0.1"},
    }


def _calico_selector(j: int) -> dict[str, Any]:
    forms = [
        {"selector": f"app == 'app-{j % APPS}'"},
        {"selector": f"tier in {{'{TIERS[j % 3]}', 'none'}} && has(app)"},
        {"selector": f"app starts with 'app-{j % APPS}' || tier == 'cache'"},
        {"selector": f"app == 'app-{j % APPS}'", "serviceAccountSelector":
            "projectcalico.org/name == 'sa-1'"},
        {"selector": "!has(legacy) && pod-template-hash not in {'h1', 'h2'}"},
    ]
    return forms[j % len(forms)]


def _policies(ns: str, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    k8s, calico = [], []
    for j in range(count):
        if j % 2 == 0:
            k8s.append({"metadata": {"namespace": ns, "name": f"knp-{j}"}, "spec": {
                "podSelector": {"matchLabels": {"app": f"app-{j % APPS}"}},
                "policyTypes": ["Ingress"] if j % 4 else ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}]}})
        else:
            spec = _calico_selector(j)
            spec["types"] = ["Egress"] if j % 3 else ["Ingress", "Egress"]
            spec["egress"] = [{"action": "Deny", "destination": {"nets": ["8.0.0.0/8"]}},
                              {"action": "Allow"}]
            calico.append({"metadata": {"namespace": ns, "name": f"cnp-{j}"}, "spec": spec})
    return k8s, calico


def _gnp(j: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": f"app == 'app-{j % APPS}'", "types": ["Ingress"],
                            "ingress": [{"action": "Pass"}]}
    if j % 2:
        spec["namespaceSelector"] = f"team == 't{j % TEAMS}'"
    return {"metadata": {"name": f"gnp-{j}"}, "spec": spec}


class World:
    """Stores and a wired index for one cluster size."""

    def __init__(self, *, namespaces: int, pods_per_ns: int, policies_per_ns: int,
                 gnps: int) -> None:
        stores = PolicyStores()
        self.pods = stores.pods
        self.namespaces = stores.namespaces
        self.accounts = stores.service_accounts
        self.k8s = stores.k8s_policies
        self.calico = stores.calico_policies
        self.gnps = stores.global_policies
        self.index: PolicyIndex = wire_policy_index(stores, telemetry=Telemetry())
        started = time.perf_counter()
        for j in range(gnps):
            self.gnps.upsert(("", f"gnp-{j}"), parse_global_network_policy(_gnp(j)))
        for n in range(namespaces):
            ns = f"ns-{n:04d}"
            self.namespaces.upsert(("", ns), parse_namespace(
                {"metadata": {"name": ns, "labels": {"team": f"t{n % TEAMS}"}}}))
            for a in range(3):
                self.accounts.upsert((ns, f"sa-{a}"), parse_service_account(
                    {"metadata": {"name": f"sa-{a}", "namespace": ns,
                                  "labels": {"role": f"r{a}"}}}))
            k8s, calico = _policies(ns, policies_per_ns)
            for raw in k8s:
                self.k8s.upsert((ns, raw["metadata"]["name"]), parse_k8s_network_policy(raw))
            for raw in calico:
                self.calico.upsert((ns, raw["metadata"]["name"]),
                                   parse_calico_network_policy(raw))
            for i in range(pods_per_ns):
                self.pods.upsert((ns, f"pod-{i:05d}"), parse_pod(_pod(ns, i)))
        self.build_s = time.perf_counter() - started

    def pod_events(self, count: int) -> Callable[[], None]:
        """``count`` relabel events on pods of ns-0000 (each flips a pod's app label)."""
        ns = "ns-0000"
        originals = [self.pods.get((ns, f"pod-{i:05d}")) for i in range(min(count, 100))]
        variants = []
        for i, pod in enumerate(originals):
            assert pod is not None
            raw = _pod(ns, i)
            raw["metadata"]["labels"]["app"] = f"app-{(i + 5) % APPS}"
            variants.append((pod, parse_pod(raw)))

        def run() -> None:
            for k in range(count):
                pod, variant = variants[k % len(variants)]
                key = (ns, pod.name)
                self.pods.upsert(key, variant if k // len(variants) % 2 == 0 else pod)
        return run

    def policy_events(self, count: int) -> Callable[[], None]:
        """``count`` edits of one Calico policy of ns-0000 (selector flips between two apps)."""
        ns, name = "ns-0000", "cnp-1"
        variants = []
        for app in ("app-1", "app-2"):
            raw = {"metadata": {"namespace": ns, "name": name},
                   "spec": {"selector": f"app == '{app}'", "types": ["Egress"],
                            "egress": [{"action": "Allow"}]}}
            variants.append(parse_calico_network_policy(raw))

        def run() -> None:
            for k in range(count):
                self.calico.upsert((ns, name), variants[k % 2])
        return run

    def namespace_events(self, count: int) -> Callable[[], None]:
        """``count`` label changes of ns-0000 (its team label flips)."""
        variants = [parse_namespace({"metadata": {"name": "ns-0000", "labels": {"team": t}}})
                    for t in ("t1", "t3")]

        def run() -> None:
            for k in range(count):
                self.namespaces.upsert(("", "ns-0000"), variants[k % 2])
        return run


    def service_account_events(self, count: int) -> Callable[[], None]:
        """``count`` label changes of service account sa-1 of ns-0000 (its role flips)."""
        variants = [parse_service_account({"metadata": {
            "name": "sa-1", "namespace": "ns-0000", "labels": {"role": role}}})
            for role in ("r1", "r0")]

        def run() -> None:
            for k in range(count):
                self.accounts.upsert(("ns-0000", "sa-1"), variants[k % 2])
        return run


def _per_event_us(run: Callable[[], None], count: int, repeats: int) -> float:
    """Median CPU time per event (process CPU time: other load on the machine adds no wait)."""
    run()  # warm up (and leave the state where the timed runs start)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append((time.process_time() - started) / count * 1e6)
    return statistics.median(times)


def measure(world: World, *, events: int, repeats: int) -> dict[str, float]:
    return {
        "pod_event_us": _per_event_us(world.pod_events(events), events, repeats),
        "policy_event_us": _per_event_us(world.policy_events(events // 10), events // 10,
                                         repeats),
        "namespace_event_us": _per_event_us(world.namespace_events(events // 10),
                                            events // 10, repeats),
        "service_account_event_us": _per_event_us(world.service_account_events(events // 10),
                                                  events // 10, repeats),
        "build_s": world.build_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=30_000)
    parser.add_argument("--policies", type=int, default=3_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--gnps", type=int, default=100)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    pods_per_ns = args.pods // args.namespaces
    policies_per_ns = (args.policies - args.gnps) // args.namespaces
    shape = {"pods_per_namespace": pods_per_ns, "policies_per_namespace": policies_per_ns,
             "gnps": args.gnps}

    one = World(namespaces=args.namespaces, pods_per_ns=pods_per_ns,
                policies_per_ns=policies_per_ns, gnps=args.gnps)
    rss_1x_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pods_1x, policies_1x = len(one.pods), len(one.k8s) + len(one.calico) + len(one.gnps)
    m1 = measure(one, events=args.events, repeats=args.repeats)
    del one
    gc.collect()

    big = World(namespaces=args.namespaces * args.factor, pods_per_ns=pods_per_ns,
                policies_per_ns=policies_per_ns, gnps=args.gnps)
    pods_nx, policies_nx = len(big.pods), len(big.k8s) + len(big.calico) + len(big.gnps)
    mn = measure(big, events=args.events, repeats=args.repeats)
    rss_nx_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result: dict[str, Any] = {
        "bench": "policy_index",
        **shape,
        "factor": args.factor,
        "pods_1x": pods_1x, "policies_1x": policies_1x, "namespaces_1x": args.namespaces,
        "pods_nx": pods_nx, "policies_nx": policies_nx,
        "namespaces_nx": args.namespaces * args.factor,
        **{f"{k}_1x": round(v, 3) for k, v in m1.items()},
        **{f"{k}_nx": round(v, 3) for k, v in mn.items()},
        "pod_event_ratio": round(mn["pod_event_us"] / m1["pod_event_us"], 3),
        "policy_event_ratio": round(mn["policy_event_us"] / m1["policy_event_us"], 3),
        "namespace_event_ratio": round(mn["namespace_event_us"] / m1["namespace_event_us"], 3),
        "service_account_event_ratio": round(
            mn["service_account_event_us"] / m1["service_account_event_us"], 3),
        "rss_after_1x_build_mb": round(rss_1x_mb, 1),
        "rss_peak_mb": round(rss_nx_mb, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
