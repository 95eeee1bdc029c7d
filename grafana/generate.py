"""Generate the calico-exporter Grafana dashboards as JSON, from plain Python dicts.

Run ``python grafana/generate.py`` after changing a panel and commit the JSON it writes under
``grafana/dashboards/``; ``--check`` exits 1 (listing the files) when the committed JSON differs
from what this script builds, which the test suite runs.

Every dashboard has a ``datasource`` variable (every panel and target uses it), an optional
``cluster`` variable (``All`` matches series without a cluster label too) and the node, pool,
namespace, probe or job variables its panels filter on. Panels are laid out by :class:`Grid`,
which packs them left to right in rows of 24 columns, so they never overlap.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["calico", "calico-exporter"]

Panel = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Building blocks


def sel(**matchers: str) -> str:
    """A label selector that always filters on ``cluster``: a ``$variable`` value is a regex
    match (multi-value and All variables expand to regexes), any other value an exact match."""
    parts = ['cluster=~"$cluster"']
    for name, value in matchers.items():
        op = "=~" if value.startswith("$") else "="
        parts.append(f'{name}{op}"{value}"')
    return "{" + ", ".join(parts) + "}"


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "refId": ref, "expr": expr, "range": not instant,
                         "instant": instant, "legendFormat": legend or "__auto"}
    if table:
        t["format"] = "table"
    return t


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN_RED = thresholds((None, "green"), (1, "red"))


def panel(kind: str, title: str, targets: list[dict[str, Any]], *, description: str = "",
          unit: str = "short", w: int = 12, h: int = 8, options: dict[str, Any] | None = None,
          custom: dict[str, Any] | None = None, steps: dict[str, Any] | None = None,
          mappings: list[dict[str, Any]] | None = None, minmax: tuple[float, float] | None = None,
          transformations: list[dict[str, Any]] | None = None) -> Panel:
    defaults: dict[str, Any] = {"unit": unit}
    if custom:
        defaults["custom"] = custom
    if steps:
        defaults["thresholds"] = steps
    if mappings:
        defaults["mappings"] = mappings
    if minmax:
        defaults["min"], defaults["max"] = minmax
    p: Panel = {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {}, "gridPos": {"w": w, "h": h},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def stat(title: str, expr: str, *, description: str = "", unit: str = "short", w: int = 6,
         steps: dict[str, Any] | None = None) -> Panel:
    return panel("stat", title, [target(expr, instant=True)], description=description, unit=unit,
                 w=w, h=4, steps=steps or GREEN_RED,
                 options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False}})


def timeseries(title: str, *targets: dict[str, Any], description: str = "", unit: str = "short",
               w: int = 12, h: int = 8, stack: bool = False,
               steps: dict[str, Any] | None = None) -> Panel:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never", "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return panel("timeseries", title, list(targets), description=description, unit=unit, w=w,
                 h=h, custom=custom, steps=steps,
                 options={"legend": {"displayMode": "table", "placement": "right",
                                     "calcs": ["lastNotNull", "max"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}})


def state_timeline(title: str, expr: str, legend: str, *, ok: str, bad: str,
                   description: str = "", w: int = 24, h: int = 8) -> Panel:
    mappings = [{"type": "value", "options": {
        "0": {"text": bad, "color": "red", "index": 0},
        "1": {"text": ok, "color": "green", "index": 1}}}]
    return panel("state-timeline", title, [target(expr, legend)], description=description, w=w,
                 h=h, mappings=mappings, steps=thresholds((None, "red"), (1, "green")),
                 options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                          "legend": {"showLegend": False}})


def table(title: str, *targets: dict[str, Any], description: str = "", w: int = 24,
          h: int = 8, hide: Iterable[str] = (), rename: dict[str, str] | None = None,
          merge: bool = False, mappings: list[dict[str, Any]] | None = None,
          steps: dict[str, Any] | None = None, unit: str = "short") -> Panel:
    hidden = ["Time", "__name__", "job", "instance", "endpoint", "service", "pod", "container",
              "prometheus", *hide]
    transformations: list[dict[str, Any]] = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": dict.fromkeys(hidden, True), "renameByName": rename or {}}})
    return panel("table", title, list(targets), description=description, w=w, h=h, unit=unit,
                 transformations=transformations, mappings=mappings, steps=steps,
                 custom={"align": "auto", "cellOptions": {"type": "color-text"}},
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""}})


def bargauge(title: str, expr: str, legend: str, *, description: str = "",
             unit: str = "percentunit", w: int = 12, h: int = 8,
             steps: dict[str, Any] | None = None, minmax: tuple[float, float] | None = (0, 1),
             ) -> Panel:
    return panel("bargauge", title, [target(expr, legend, instant=True)],
                 description=description, unit=unit, w=w, h=h, steps=steps, minmax=minmax,
                 options={"orientation": "horizontal", "displayMode": "gradient",
                          "showUnfilled": True, "valueMode": "color",
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False}})


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}


class Grid:
    """Packs panels left to right into 24-column rows; a row panel starts a new line."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = self._y = self._line_h = 0

    def add(self, *panels: Panel) -> None:
        for p in panels:
            pos = p["gridPos"]
            if p["type"] == "row" or self._x + pos["w"] > 24:
                self._newline()
            pos["x"], pos["y"] = self._x, self._y
            self._x += pos["w"]
            self._line_h = max(self._line_h, pos["h"])
            if p["type"] == "row":
                self._newline()
            p["id"] = len(self.panels) + 1
            self.panels.append(p)

    def _newline(self) -> None:
        if self._x:
            self._y += self._line_h
        self._x = self._line_h = 0


def variable(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
            "refresh": 2, "sort": 1, "regex": "", "hide": 0, "multi": multi,
            "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": []}


def datasource_variable() -> dict[str, Any]:
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "regex": "", "hide": 0, "refresh": 1, "multi": False,
            "includeAll": False, "current": {"selected": True, "text": "default",
                                              "value": "default"}, "options": []}


def cluster_variable(metric: str) -> dict[str, Any]:
    v = variable("cluster", "Cluster", f"label_values({metric}, cluster)", multi=False)
    v["current"] = {"selected": True, "text": "All", "value": "$__all"}
    return v


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]],
              grid: Grid) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": TAGS,
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
        "time": {"from": "now-6h", "to": "now"}, "timepicker": {}, "timezone": "browser",
        "refresh": "1m", "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "Calico dashboards", "type": "dashboards", "tags": ["calico-exporter"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": grid.panels,
    }


UP_DOWN = [{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0},
                                         "1": {"text": "up", "color": "green", "index": 1}}}]
MATCH = [{"type": "value", "options": {"0": {"text": "MISMATCH", "color": "red", "index": 0},
                                       "1": {"text": "match", "color": "green", "index": 1}}}]
YES_NO = [{"type": "value", "options": {"0": {"text": "no", "index": 0},
                                        "1": {"text": "yes", "index": 1}}}]


# --------------------------------------------------------------------------------------------
# Dashboards


def bgp() -> dict[str, Any]:
    n = {"node": "$node"}
    # Cluster mode and node mode may both report a node: take the max per node, never the sum.
    est = f'max by (cluster, node, ip_version) (calico_bgp_peers{sel(state="established", **n)})'
    not_est = ("max by (cluster, node, ip_version) "
               f'(calico_bgp_peers{sel(state="not_established", **n)})')
    total = f"max by (cluster, node, ip_version, state) (calico_bgp_peers{sel(**n)})"
    g = Grid()
    g.add(
        row("Overview"),
        stat("Established peers", f"sum({est})", steps=thresholds((None, "blue")),
             description="BGP sessions in state Established, summed over the selected nodes "
                         "(each session counts once per side)."),
        stat("Peers not established", f"sum({not_est}) or vector(0)",
             description="BGP sessions in any state but Established."),
        stat("Nodes without an established peer",
             f"count(sum by (cluster, node) ({est}) == 0 and "
             f"sum by (cluster, node) ({total}) > 0) or vector(0)",
             description="Nodes that have BGP peers but none Established: "
                         "CalicoBGPNodeNoEstablishedPeers."),
        stat("BIRD not ready",
             f"count(min by (cluster, node, ip_version) (calico_bird_ready{sel(**n)}) == 0) "
             "or vector(0)",
             description="BIRD daemons (per node and IP version) that are not ready: "
                         "CalicoBIRDNotReady."),
        row("Peers"),
        timeseries("Established peers per node",
                   target(f"sum by (node, ip_version) ({est})", "{{node}} IPv{{ip_version}}"),
                   description="From CalicoNodeStatus status.bgp (cluster mode) or BIRD's "
                               "protocol list (node mode)."),
        timeseries("Not-established peers per node",
                   target(f"sum by (node, ip_version) ({not_est})", "{{node}} IPv{{ip_version}}"),
                   steps=thresholds((None, "green"), (1, "red"))),
        state_timeline("Peer sessions", "min by (node, ip_version, peer_ip, peer_type, "
                       f"peer_port) (calico_bgp_peer_up{sel(**n)})",
                       "{{node}} → {{peer_ip}} ({{peer_type}}) {{peer_port}}",
                       ok="Established", bad="down",
                       description="Each BGP session over time: green while Established. "
                                   "CalicoBGPPeerDown fires after 5 minutes of red."),
        table("Peer state",
              target(f"max by (node, ip_version, peer_ip, peer_type, peer_port, state) "
                     f"(calico_bgp_peer_state{sel(**n)} == 1)", instant=True, table=True,
                     ref="A"),
              target(f"max by (node, ip_version, peer_ip, peer_type, peer_port) (time() - "
                     f"calico_bgp_peer_state_change_timestamp_seconds{sel(**n)})",
                     instant=True, table=True, ref="B"),
              merge=True, hide=["Value #A"], unit="s",
              rename={"ip_version": "IP version", "peer_ip": "peer", "peer_type": "type",
                      "peer_port": "port",
                      "Value #B": "in this state for"},
              description="The current BGP state of every peer: Idle, Connect, Active, "
                          "OpenSent, OpenConfirm, Established, Close or Unknown; how long it "
                          "has been in it comes from the node-mode DaemonSet only."),
        row("Routes"),
        timeseries("Routes by source",
                   target(f"sum by (node, type, source_type) (calico_bgp_routes{sel(**n)})",
                          "{{node}} {{type}} {{source_type}}"),
                   description="Routes in each node's BIRD table (FIB: selected, RIB: "
                               "alternatives) by where they were learned."),
        timeseries("Routes per peer (node mode)",
                   target(f"sum by (node, peer_ip, peer_port, direction) "
                          f"(calico_bgp_peer_routes{sel(**n)})",
                          "{{node}} {{direction}} {{peer_ip}} {{peer_port}}"),
                   description="Routes imported from and exported to each peer; only the "
                               "node-mode DaemonSet reports these."),
        row("BIRD"),
        state_timeline("BIRD readiness", f"min by (node, ip_version) (calico_bird_ready{sel(**n)})",
                       "{{node}} IPv{{ip_version}}", ok="ready", bad="not ready", w=12),
        table("BIRD daemons",
              target(f"max by (node, ip_version, version, router_id) (calico_bird_info{sel(**n)})",
                     instant=True, table=True, ref="A"),
              target(f"max by (node, ip_version) (time() - calico_bird_last_boot_timestamp_seconds"
                     f"{sel(**n)})", instant=True, table=True, ref="B"),
              target(f"max by (node, ip_version) (time() - "
                     f"calico_bird_last_reconfiguration_timestamp_seconds{sel(**n)})",
                     instant=True, table=True, ref="C"),
              merge=True, w=12, hide=["Value #A"], unit="s",
              rename={"Value #B": "up for", "Value #C": "since reconfiguration",
                      "ip_version": "IP version", "router_id": "router ID"}),
        timeseries("Age of CalicoNodeStatus content",
                   target(f"max by (node) (time() - "
                          f"calico_node_status_last_updated_timestamp_seconds{sel(**n)})",
                          "{{node}}"),
                   unit="s", w=24,
                   description="Time since calico-node last changed the node's CalicoNodeStatus "
                               "(cluster mode). It moves only when the content changes, so a "
                               "stable cluster shows a growing age: this is not a heartbeat."),
    )
    return dashboard("calico-exporter-bgp", "Calico BGP",
                     "BGP sessions, routes and BIRD health per node, from calico-exporter.",
                     [cluster_variable("calico_bgp_peers"),
                      variable("node", "Node",
                               'label_values(calico_bgp_peers{cluster=~"$cluster"}, node)')], g)


def ipam() -> dict[str, Any]:
    p = {"pool": "$pool"}
    pn = {"pool": "$pool", "node": "$node"}
    util_steps = thresholds((None, "green"), (0.85, "orange"), (0.95, "red"))
    g = Grid()
    g.add(
        row("Pools"),
        bargauge("Pool utilization",
                 f"max by (pool) (calico_ippool_utilization_ratio{sel(**p)})", "{{pool}}",
                 steps=util_steps,
                 description="Allocated addresses over the pool size. CalicoIPPoolNearExhaustion "
                             "warns above 85 % and pages above 95 %."),
        bargauge("Blocks claimed of capacity",
                 f"max by (pool) (calico_ippool_blocks{sel(**p)}) / "
                 f"max by (pool) (calico_ippool_blocks_capacity{sel(**p)})", "{{pool}}",
                 steps=thresholds((None, "green"), (0.85, "orange"), (1, "red")),
                 description="IPAM blocks claimed by nodes over the blocks the pool can hold. At "
                             "100 % new nodes get no block and start borrowing addresses "
                             "(CalicoIPPoolBlocksExhausted)."),
        timeseries("Allocated addresses per pool",
                   target(f"max by (pool) (calico_ippool_allocated_addresses{sel(**p)})",
                          "{{pool}} allocated", ref="A"),
                   target(f"max by (pool) (calico_ippool_size_addresses{sel(**p)})",
                          "{{pool}} size", ref="B")),
        timeseries("Blocks per pool",
                   target(f"max by (pool) (calico_ippool_blocks{sel(**p)})", "{{pool}} claimed",
                          ref="A"),
                   target(f"max by (pool) (calico_ippool_blocks_capacity{sel(**p)})",
                          "{{pool}} capacity", ref="B")),
        table("Pool settings",
              target(f"max by (pool, cidr, block_size, ipip_mode, vxlan_mode, nat_outgoing, "
                     f"disabled, usable) (calico_ippool_info{sel(**p)})", instant=True,
                     table=True),
              hide=["Value"], h=6,
              rename={"block_size": "block size", "ipip_mode": "IPIP", "vxlan_mode": "VXLAN",
                      "nat_outgoing": "NAT outgoing"}),
        row("Nodes"),
        timeseries("Blocks per node",
                   target(f"sum by (node) (calico_ipam_node_blocks{sel(**pn)})", "{{node}}"),
                   description="IPAM blocks with a host affinity to the node."),
        timeseries("Allocated addresses per node",
                   target(f"sum by (node) (calico_ipam_node_allocated_addresses{sel(**pn)})",
                          "{{node}}")),
        timeseries("Borrowed addresses per node",
                   target(f"sum by (node) (calico_ipam_borrowed_addresses{sel(**pn)})", "{{node}}"),
                   steps=thresholds((None, "green"), (1, "orange")),
                   description="Addresses a node's pods hold in blocks affine to another node: "
                               "the pool had no free block when the node needed one."),
        timeseries("Workload endpoints per node",
                   target(f'sum by (node) (calico_workload_endpoints{sel(node="$node")})',
                          "{{node}}"),
                   description="Running, non-hostNetwork pods holding a Calico IP."),
        row("Blocks and leaks"),
        table("Blocks",
              target(f"max by (pool, block, node) (calico_ipam_block_allocated_addresses"
                     f"{sel(**pn)})", instant=True, table=True, ref="A"),
              target(f"max by (pool, block, node) (calico_ipam_block_size_addresses{sel(**pn)})",
                     instant=True, table=True, ref="B"),
              target(f"max by (pool, block, node) (calico_ipam_block_allocated_addresses"
                     f"{sel(**pn)}) / max by (pool, block, node) "
                     f"(calico_ipam_block_size_addresses{sel(**pn)})",
                     instant=True, table=True, ref="C"),
              merge=True, h=10, rename={"node": "affinity node", "Value #A": "allocated",
                                        "Value #B": "size", "Value #C": "utilization"},
              description="Every claimed IPAM block, like calicoctl ipam show --show-blocks."),
        stat("Leaked addresses", f"sum(calico_ipam_leaked_addresses{sel(**pn)}) or vector(0)",
             steps=thresholds((None, "green"), (1, "orange")), w=6,
             description="Allocations whose pod is gone (or holds another IP) for longer than the "
                         "leak grace period: CalicoIPAMLeakedAddresses."),
        stat("Orphaned handles", f"sum(calico_ipam_orphaned_handles{sel()}) or vector(0)",
             steps=thresholds((None, "green"), (1, "orange")), w=6,
             description="IPAM handles that hold no address in any block."),
        timeseries("Leaked addresses by node and pool",
                   target(f"sum by (node, pool) (calico_ipam_leaked_addresses{sel(**pn)})",
                          "{{node}} {{pool}}"),
                   steps=thresholds((None, "green"), (1, "orange"))),
        timeseries("Block affinities by state",
                   target(f"sum by (state) (calico_ipam_block_affinities{sel(node='$node')})",
                          "{{state}}"),
                   description="BlockAffinity objects: confirmed, pending or pendingDeletion. "
                               "Pending affinities that do not clear point at a stuck claim."),
    )
    return dashboard("calico-exporter-ipam", "Calico IPAM",
                     "IP pool, block and node utilization, borrowed and leaked addresses.",
                     [cluster_variable("calico_ippool_size_addresses"),
                      variable("pool", "Pool",
                               'label_values(calico_ippool_size_addresses{cluster=~"$cluster"}, '
                               "pool)"),
                      variable("node", "Node",
                               'label_values(calico_ipam_node_blocks{cluster=~"$cluster"}, node)')],
                     g)


def policy() -> dict[str, Any]:
    ns = {"namespace": "$namespace"}
    per_policy = {"namespace": "$namespace", "tier": "$tier"}
    staged_deletes = ("calico_network_policy_staged_enforced_pods"
                      + sel(action="Delete", **per_policy))
    g = Grid()
    g.add(
        row("Coverage"),
        stat("Pods not isolated for ingress",
             f'sum(calico_pods_not_isolated{sel(direction="ingress", **ns)})',
             steps=thresholds((None, "green"), (1, "orange")),
             description="Pods no enforced policy of a dropping tier (default action not Pass) "
                         "applies to for ingress: anything may connect to them."),
        stat("Pods not isolated for egress",
             f'sum(calico_pods_not_isolated{sel(direction="egress", **ns)})',
             steps=thresholds((None, "green"), (1, "orange"))),
        stat("Policies that select nothing",
             f"count(calico_network_policy_selected_pods{sel(**per_policy)} == 0 "
             f"unless on (kind, namespace, policy, tier) {staged_deletes}) or vector(0)",
             steps=thresholds((None, "green"), (1, "orange")),
             description="Policies whose selector matches no pod: usually a label typo "
                         "(staged Delete policies, which select nothing by design, excluded)."),
        stat("Policies", f"sum(calico_network_policies{sel(**per_policy)})",
             steps=thresholds((None, "blue"))),
        timeseries("Pods not isolated by namespace",
                   target(f"sum by (namespace, direction) (calico_pods_not_isolated{sel(**ns)})",
                          "{{namespace}} {{direction}}"),
                   steps=thresholds((None, "green"), (1, "orange"))),
        timeseries("Pods isolated by namespace",
                   target(f"sum by (namespace, direction) (calico_pods_isolated{sel(**ns)})",
                          "{{namespace}} {{direction}}")),
        row("Policies"),
        table("Policies that select nothing",
              target(f"max by (kind, namespace, tier, policy) "
                     f"(calico_network_policy_selected_pods{sel(**per_policy)}) == 0 "
                     f"unless on (kind, namespace, policy, tier) {staged_deletes}",
                     instant=True, table=True),
              hide=["Value"], w=12,
              description="Cluster-scoped policies (global, staged_global, cluster) show an "
                          "empty namespace."),
        table("Pods selected per policy",
              target(f"max by (kind, namespace, tier, policy) "
                     f"(calico_network_policy_selected_pods{sel(**per_policy)})",
                     instant=True, table=True),
              rename={"Value": "pods"}, w=12),
        table("Tiers in evaluation order",
              target(f"max by (tier, order) (calico_network_policy_tiers{sel(tier='$tier')})",
                     instant=True, table=True),
              hide=["Value"], w=8,
              description="Felix evaluates the tiers that apply to a pod by ascending order."),
        table("Staged policies",
              target(f"max by (kind, namespace, tier, policy, action) "
                     f"(calico_network_policy_staged_enforced_pods{sel(**per_policy)})",
                     instant=True, table=True),
              rename={"Value": "enforced policy's pods"}, w=16,
              description="Staged policies and their stagedAction, with the pods the enforced "
                          "policy of the same name selects today: what enforcing a Set would "
                          "replace and a Delete would remove."),
        timeseries("Policies by kind and tier",
                   target(f"sum by (kind, tier) (calico_network_policies{sel(**per_policy)})",
                          "{{kind}} {{tier}}")),
        timeseries("Network sets",
                   target(f"sum by (kind, namespace) (calico_network_sets{sel(**ns)})",
                          "{{kind}} {{namespace}}"),
                   description="Calico NetworkSets and GlobalNetworkSets that policies can "
                               "select as sources or destinations."),
        timeseries("Rules by action and direction",
                   target(f"sum by (action, direction) (calico_network_policy_rules{sel()})",
                          "{{direction}} {{action}}"),
                   stack=True,
                   description="Rules of every policy kind by action (Allow, Deny, Log, Pass)."),
        row("Traffic verdicts (Goldmane)"),
        timeseries("Denied connections by policy",
                   target("sum by (tier, kind, namespace, policy, direction) "
                          "(rate(calico_policy_flow_connections_total"
                          f"{sel(action='deny', **ns)}[5m]))",
                          "{{tier}} {{namespace}}/{{policy}} {{direction}}"),
                   unit="cps",
                   description="Connections per second the dataplane denied, by the policy that "
                               "decided (Goldmane's flows; __end_of_tier__: a tier's policies "
                               "selected the pod but no rule matched). Empty without "
                               "--goldmane-enabled."),
        timeseries("Staged policies that would deny",
                   target("sum by (tier, kind, namespace, policy, direction) "
                          "(rate(calico_policy_staged_flow_changed_connections_total"
                          f"{sel(action='deny', **ns)}[5m]))",
                          "{{tier}} {{namespace}}/{{policy}} {{direction}}"),
                   unit="cps",
                   description="Connections per second allowed today that a staged policy "
                               "would deny once enforced (CalicoStagedPolicyWouldDeny)."),
    )
    return dashboard("calico-exporter-policy", "Calico Policy",
                     "Which pods policies select per tier, policies that select nothing, staged "
                     "policies, pods no policy isolates, and the traffic policies deny (or, "
                     "staged, would deny).",
                     [cluster_variable("calico_pods_isolated"),
                      variable("namespace", "Namespace",
                               'label_values(calico_pods_isolated{cluster=~"$cluster"}, '
                               "namespace)"),
                      variable("tier", "Tier",
                               'label_values(calico_network_policies{cluster=~"$cluster"}, '
                               "tier)")], g)


def probes() -> dict[str, Any]:
    s = {"source_namespace": "$source_namespace", "probe": "$probe"}
    g = Grid()
    g.add(
        row("Verdicts"),
        stat("Probes", f"count(calico_probe_success{sel(**s)})",
             steps=thresholds((None, "blue")), w=4),
        stat("Mismatches", f"count(calico_probe_success{sel(**s)} == 0) or vector(0)", w=4,
             description="Probes whose last verdict did not match expect (including errors)."),
        stat("Unexpected allows",
             f'count((calico_probe_success{sel(expect="deny", **s)} == 0) and '
             f'(calico_probe_reachable{sel(expect="deny", **s)} == 1)) or vector(0)', w=4,
             description="Targets reached that policy must deny: a security regression "
                         "(CalicoNetworkPolicyUnexpectedAllow)."),
        stat("Probes in error",
             f'count(calico_probe_outcome{sel(outcome="error", **s)} == 1) or vector(0)', w=4,
             description="Probes that could not run at all (CalicoProbeErrors)."),
        stat("Agents with a rejected config",
             f"count(calico_probe_config_last_reload_successful{sel()} == 0) or vector(0)", w=4,
             description="Agents whose last probe-config reload failed validation; they keep "
                         "the previous config (CalicoProbeConfigReloadFailed)."),
        stat("Skipped runs (1h)",
             f"sum(increase(calico_probe_skipped_runs_total{sel(**s)}[1h])) or vector(0)",
             steps=thresholds((None, "green"), (1, "orange")), w=4,
             description="Runs not started because the concurrency limit held the previous "
                         "one past its slot: the agent is overloaded."),
        table("Verdict matrix",
              target(f"max by (source_namespace, probe, protocol, expect) "
                     f"(calico_probe_success{sel(**s)})", instant=True, table=True, ref="A"),
              target(f"max by (source_namespace, probe, protocol, expect, outcome) "
                     f"(calico_probe_outcome{sel(**s)} == 1)", instant=True, table=True,
                     ref="B"),
              target(f"max by (source_namespace, probe, protocol, expect, target) "
                     f"(calico_probe_info{sel(**s)})", instant=True, table=True, ref="C"),
              merge=True, mappings=MATCH, steps=thresholds((None, "red"), (1, "green")),
              hide=["Value #B", "Value #C"], h=10,
              rename={"source_namespace": "from namespace", "Value #A": "verdict"},
              description="Every probe by source namespace: its expectation, the last outcome "
                          "and whether it matched."),
        state_timeline("Verdict over time",
                       f"max by (source_namespace, probe) (calico_probe_success{sel(**s)})",
                       "{{source_namespace}} / {{probe}}", ok="match", bad="mismatch",
                       h=10),
        row("Latency and runs"),
        timeseries("Latency of successful runs (p50, p95)",
                   target(f"histogram_quantile(0.95, sum by (le, source_namespace, probe) "
                          f"(rate(calico_probe_latency_seconds_bucket{sel(**s)}"
                          f"[$__rate_interval])))", "p95 {{source_namespace}} / {{probe}}",
                          ref="A"),
                   target(f"histogram_quantile(0.5, sum by (le, source_namespace, probe) "
                          f"(rate(calico_probe_latency_seconds_bucket{sel(**s)}"
                          f"[$__rate_interval])))", "p50 {{source_namespace}} / {{probe}}",
                          ref="B"),
                   unit="s"),
        timeseries("Duration of the last run",
                   target(f"max by (source_namespace, probe) "
                          f"(calico_probe_duration_seconds{sel(**s)})",
                          "{{source_namespace}} / {{probe}}"),
                   unit="s", description="Includes timeouts: a denied probe takes its timeout."),
        timeseries("Runs by result",
                   target(f"sum by (result) (rate(calico_probe_runs_total{sel(**s)}"
                          f"[$__rate_interval]))", "{{result}}"),
                   unit="ops", stack=True),
        timeseries("Errors",
                   target(f'sum by (source_namespace, probe) (increase(calico_probe_runs_total'
                          f'{sel(result="error", **s)}[$__rate_interval]))',
                          "{{source_namespace}} / {{probe}}"),
                   steps=thresholds((None, "green"), (1, "red")),
                   description="Runs that could not execute (socket permission, resolver "
                               "missing): these are not verdicts."),
        timeseries("Time since last run",
                   target(f"max by (source_namespace, probe) (time() - "
                          f"calico_probe_last_run_timestamp_seconds{sel(**s)})",
                          "{{source_namespace}} / {{probe}}"),
                   unit="s", w=24,
                   description="Should stay below the probe interval; growth means the agent "
                               "is stuck or gone."),
    )
    return dashboard("calico-exporter-probes", "Calico Probes",
                     "Synthetic probes with expected verdicts, by source namespace.",
                     [cluster_variable("calico_probe_success"),
                      variable("source_namespace", "Source namespace",
                               'label_values(calico_probe_success{cluster=~"$cluster"}, '
                               "source_namespace)"),
                      variable("probe", "Probe",
                               'label_values(calico_probe_success{cluster=~"$cluster", '
                               'source_namespace=~"$source_namespace"}, probe)')], g)


def exporter_health() -> dict[str, Any]:
    j = {"job": "$job", "instance": "$instance"}
    g = Grid()
    g.add(
        row("Targets"),
        stat("Targets up", f"sum(up{sel(**j)})", steps=thresholds((None, "blue"))),
        stat("Targets down", f"count(up{sel(**j)} == 0) or vector(0)",
             description="calico-exporter targets Prometheus cannot scrape: CalicoExporterDown."),
        stat("Sources down", f"count(calico_exporter_source_up{sel(**j)} == 0) or vector(0)",
             description="Data sources (kubernetes, bird, ...) that did not answer on their "
                         "last attempt: CalicoExporterSourceDown."),
        stat("Invalid objects (1h)",
             f"sum(increase(calico_exporter_invalid_objects_total{sel(**j)}[1h])) or vector(0)",
             steps=thresholds((None, "green"), (1, "orange"))),
        table("Versions",
              target(f"max by (job, instance, version) (calico_exporter_build_info{sel(**j)})",
                     instant=True, table=True),
              hide=["Value"], w=12, h=6),
        state_timeline("Data sources", f"min by (instance, source) "
                       f"(calico_exporter_source_up{sel(**j)})", "{{instance}} {{source}}",
                       ok="up", bad="down", w=12, h=6),
        table("Calico API group",
              target(f"max by (instance, group, version) "
                     f"(calico_exporter_calico_api_info{sel(**j)})", instant=True, table=True),
              hide=["Value"], w=24, h=4,
              description="Where each cluster exporter reads Calico's resources: "
                          "crd.projectcalico.org v1, or native projectcalico.org v3 CRDs. It "
                          "changes when Calico's v1-to-v3 datastore migration deletes the v1 "
                          "CRDs (watch restarts with reason group_changed)."),
        row("Watches"),
        timeseries("Watch events by resource",
                   target(f"sum by (resource, event) (rate(calico_exporter_watch_events_total"
                          f"{sel(**j)}[$__rate_interval]))", "{{resource}} {{event}}"),
                   unit="ops"),
        timeseries("Watch restarts by reason",
                   target(f"sum by (resource, reason) "
                          f"(increase(calico_exporter_watch_restarts_total{sel(**j)}"
                          f"[$__rate_interval]))", "{{resource}} {{reason}}"),
                   description="end and expired are normal (the server closed the stream, or a "
                               "410 forced a relist); other reasons are errors "
                               "(CalicoExporterWatchErrors)."),
        timeseries("Invalid objects by resource",
                   target(f"sum by (resource) (increase(calico_exporter_invalid_objects_total"
                          f"{sel(**j)}[$__rate_interval]))", "{{resource}}"),
                   description="Objects, selectors or config entries that failed to parse and "
                               "were skipped; the exporter logs each with its name."),
        row("Scrapes"),
        timeseries("Scrape duration",
                   target(f"max by (instance) (scrape_duration_seconds{sel(**j)})",
                          "{{instance}}"), unit="s"),
        timeseries("Samples per scrape",
                   target(f"max by (instance) (scrape_samples_scraped{sel(**j)})",
                          "{{instance}}")),
    )
    return dashboard("calico-exporter-health", "Calico exporter health",
                     "Is calico-exporter itself healthy: targets, data sources, watches, scrapes.",
                     [cluster_variable("calico_exporter_build_info"),
                      variable("job", "Job", 'label_values(up{cluster=~"$cluster", '
                                             'job=~"calico-exporter.*"}, job)'),
                      variable("instance", "Instance", 'label_values(up{cluster=~"$cluster", '
                                                       'job=~"$job"}, instance)')], g)


DASHBOARDS = {
    "calico-bgp.json": bgp,
    "calico-ipam.json": ipam,
    "calico-policy.json": policy,
    "calico-probes.json": probes,
    "calico-exporter-health.json": exporter_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed JSON differs from the generated JSON")
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        sys.stderr.write("stale, run python grafana/generate.py: " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
