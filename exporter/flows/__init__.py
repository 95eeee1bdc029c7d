"""Per-policy flow counters from Calico's Goldmane (feature layer; imports no other feature).

``source`` reads Goldmane's completed flow windows over mutual TLS (``tls``), by polling
``Flows.List`` (default) or following ``Flows.Stream``, and resumes where it stopped;
``ingest`` turns each flow result into per-policy counts (the hot path, pure);
``counters`` holds the totals the collector in ``exporter.metrics.flows`` reads. Only this
package, the generated ``exporter.goldmane`` modules and the simulator import grpc.

Why the Flows API and not ``Statistics.List``, in short (``docs/goldmane.md`` has the reading
of Goldmane's source it rests on): flows come per key and 15-second window, counted once, with
``num_connections_started``, the reporter and the whole policy trace; the statistics API only
offers packets, bytes and *live* connections, adds every hit of a trace (not the one that
decided), mixes source and destination reports, and sums ranges without saying which windows
(still filling, or already counted) are in a sum. Polling ``Flows.List`` window by window reads
the same windows as the stream in one message per poll instead of one per flow.
"""
