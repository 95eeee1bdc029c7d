"""bench/flow_ingest runs end to end on a small input and reports every number it promises."""

from __future__ import annotations

import pytest

from bench import flow_ingest


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_flow_ingest_bench_runs_and_counts_everything() -> None:
    """A small run streams every flow over mutual TLS from a child process and reports rates,
    ratios and the counters' memory."""
    out = flow_ingest.main(flows=2000, policies=20, window=500, memory_policies=50)
    for key in ("decode_per_cpu_s", "ingest_per_cpu_s", "stream_per_cpu_s",
                "ingest_ratio_vs_decode", "stream_ratio_vs_decode", "counters_mb"):
        assert float(out[key]) > 0, key  # type: ignore[arg-type]
    assert 50 <= int(out["memory_series"]) <= 50 * 2 * 2  # type: ignore[call-overload]
