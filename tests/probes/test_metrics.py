"""The probe collector through a real CollectorRegistry: names, labels, state set, histogram."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from exporter.metrics.probes import SPECS, ProbeCollector
from exporter.probes.outcome import OUTCOMES
from exporter.probes.results import ReloadStatus, Results
from exporter.probes.scheduler import run_probe
from tests.probes.conftest import MakeProbe
from tests.probes.scrape import exposition, parse, probes_in, value
from tests.probes.servers import HttpServer

CONTRACT = {
    "calico_probe_success": "gauge",
    "calico_probe_reachable": "gauge",
    "calico_probe_outcome": "gauge",
    "calico_probe_duration_seconds": "gauge",
    "calico_probe_latency_seconds": "histogram",
    "calico_probe_runs_total": "counter",
    "calico_probe_last_run_timestamp_seconds": "gauge",
}


@pytest.fixture
async def populated(make_probe: MakeProbe, http: HttpServer,
                    refused_port: int) -> tuple[Results, ReloadStatus]:
    """Results after real runs: an allowed HTTP success, a denied refusal, a status mismatch,
    and a probe that has not run yet."""
    probes = [
        make_probe("http", f"http://127.0.0.1:{http.port}/ok", name="web"),
        make_probe("tcp", f"127.0.0.1:{refused_port}", name="closed", expect="deny",
                   source={"namespace": "testns", "labels": {"run": "x"}}),
        make_probe("http", f"http://127.0.0.1:{http.port}/status/500", name="broken"),
        make_probe("tcp", f"127.0.0.1:{http.port}", name="fresh"),
    ]
    results = Results()
    results.sync(probes)
    semaphore = asyncio.Semaphore(4)
    for probe in probes[:3]:
        for _ in range(2):
            assert results.record(probe, await run_probe(probe, semaphore=semaphore))
    status = ReloadStatus(path="p.yaml", last_successful=True, last_success_timestamp=1700000000.0,
                          successes=1, probes_in_file=6, probes_here=4)
    return results, status


def test_contract_names_and_types() -> None:
    """The issue's metric names exist with their types and labels; none is renamed."""
    specs = {s.name: s for s in SPECS}
    for name, kind in CONTRACT.items():
        assert specs[name].type == kind
        assert specs[name].labels[:4] == ("probe", "source_namespace", "protocol", "expect")
    assert specs["calico_probe_outcome"].labels[4:] == ("outcome",)
    assert specs["calico_probe_runs_total"].labels[4:] == ("result",)


def test_exposition(populated: tuple[Results, ReloadStatus]) -> None:
    """Verdicts, reachability, the outcome state set, counters and the histogram as scraped."""
    series = parse(exposition(ProbeCollector(*populated)))
    web = {"probe": "web", "source_namespace": "testns", "protocol": "http", "expect": "allow"}
    closed = {**web, "probe": "closed", "protocol": "tcp", "expect": "deny"}
    broken = {**web, "probe": "broken"}
    assert value(series, "calico_probe_success", **web) == 1.0
    assert value(series, "calico_probe_reachable", **web) == 1.0
    assert value(series, "calico_probe_success", **closed) == 1.0
    assert value(series, "calico_probe_reachable", **closed) == 0.0
    assert value(series, "calico_probe_success", **broken) == 0.0
    states = {o.value: value(series, "calico_probe_outcome", **closed, outcome=o.value)
              for o in OUTCOMES}
    assert states == {o.value: (1.0 if o.value == "refused" else 0.0) for o in OUTCOMES}
    assert value(series, "calico_probe_outcome", **broken,
                 outcome="http_status_mismatch") == 1.0
    assert value(series, "calico_probe_runs_total", **web, result="match") == 2.0
    assert value(series, "calico_probe_runs_total", **closed, result="match") == 2.0
    assert value(series, "calico_probe_runs_total", **broken, result="mismatch") == 2.0
    assert value(series, "calico_probe_runs_total", **broken, result="error") == 0.0
    assert value(series, "calico_probe_latency_seconds_count", **web) == 2.0
    assert value(series, "calico_probe_latency_seconds_bucket", **web, le="+Inf") == 2.0
    assert value(series, "calico_probe_latency_seconds_count", **closed) == 0.0
    duration = value(series, "calico_probe_duration_seconds", **web)
    assert duration is not None
    assert duration > 0
    last_run = value(series, "calico_probe_last_run_timestamp_seconds", **web)
    assert last_run is not None
    assert last_run > 1.7e9
    assert value(series, "calico_probe_config_last_reload_successful") == 1.0
    assert value(series, "calico_probe_config_reload_failures_total") == 0.0
    assert value(series, "calico_probe_config_probes", scope="agent") == 4.0
    assert value(series, "calico_probe_config_probes", scope="file") == 6.0


def test_probe_without_a_run(populated: tuple[Results, ReloadStatus]) -> None:
    """A probe that has not run yet has info and zero counters, but no verdict series."""
    series = parse(exposition(ProbeCollector(*populated)))
    assert "fresh" in probes_in(series, "calico_probe_info")
    assert "fresh" in probes_in(series, "calico_probe_runs_total")
    for name in ("calico_probe_success", "calico_probe_reachable", "calico_probe_outcome",
                 "calico_probe_duration_seconds", "calico_probe_last_run_timestamp_seconds"):
        assert "fresh" not in probes_in(series, name)
        assert "web" in probes_in(series, name)


def test_removed_probe_vanishes(populated: tuple[Results, ReloadStatus]) -> None:
    """After the config drops a probe, its series are gone from the next scrape."""
    results, status = populated
    collector = ProbeCollector(results, status)
    assert "broken" in probes_in(parse(exposition(collector)), "calico_probe_success")
    results.sync([s.probe for s in results.states() if s.probe.name != "broken"])
    series = parse(exposition(collector))
    assert all("broken" not in probes_in(series, name) for name, _ in series)


def test_promtool_accepts_exposition(populated: tuple[Results, ReloadStatus]) -> None:
    """promtool check metrics finds no problem in the exposition."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    text = exposition(ProbeCollector(*populated))
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


SECRETS = ("s3cret", "t0ken")


async def test_credentials_in_targets_never_reach_labels_or_logs(make_probe: MakeProbe,
                                                                 http: HttpServer) -> None:
    """Issue 12: userinfo and the values of credential-like query and fragment parameters
    (token, access_token, apikey, key, password, sig, X-Amz-Signature, ...) are redacted in
    calico_probe_info and in the probe's log lines, through a real run; other parameters stay."""
    from structlog.testing import capture_logs

    from exporter.probes.scheduler import Scheduler

    query = ("token=t0ken1&access_token=t0ken2&apikey=t0ken3&key=t0ken4&password=t0ken5"
             "&sig=t0ken6&X-Amz-Signature=t0ken7&page=2")
    probe = make_probe("http", f"http://app:s3cret@127.0.0.1:{http.port}/status/503?{query}"
                       "#id_token=t0ken8", name="secret", interval="100ms", timeout="90ms")
    results = Results()
    scheduler = Scheduler(results, concurrency=1)
    scheduler.apply([probe])
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(scheduler.run(stop))
        while (state := results.get("secret")) is None or state.last is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        stop.set()
        await task
    text = exposition(ProbeCollector(results, ReloadStatus()))
    redacted = "=REDACTED&".join(p.split("=")[0] for p in query.split("&")[:-1])
    assert (f'target="http://127.0.0.1:{http.port}/status/503?{redacted}=REDACTED&page=2'
            '#id_token=REDACTED"') in text
    verdicts = [e for e in logs if e["event"] == "probe_verdict"]
    assert verdicts
    assert verdicts[0]["target"] == probe.public_target
    for secret in SECRETS:
        assert secret not in text
        assert secret not in repr(logs)
