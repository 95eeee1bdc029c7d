"""Per-policy flow counters from Calico's Goldmane (feature layer; imports no other feature).

``source`` follows Goldmane's ``Flows.Stream`` over mutual TLS (``tls``) and resumes where it
stopped; ``ingest`` turns each flow result into per-policy counts (the hot path, pure);
``counters`` holds the totals the collector in ``exporter.metrics.flows`` reads. Only this
package, the generated ``exporter.goldmane`` modules and the simulator import grpc.

Why the stream and not ``Statistics.List``, in short (``docs/goldmane.md`` has the reading of
Goldmane's source it rests on): the stream sends each 15-second window once with that window's
counters, per flow key, including ``num_connections_started``, the reporter and the whole
policy trace; the statistics API only offers packets, bytes and *live* connections, adds every
hit of a trace (not the one that decided), mixes source and destination reports, and would have
to be polled over overlapping, still-filling buckets.
"""
