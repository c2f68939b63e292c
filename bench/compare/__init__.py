"""Side-by-side benchmark: Tideflow vs Debezium Server vs the replication limit (issue 9).

Every contender reads the same Postgres (the same WAL, replayed from copies of one template
slot) and writes to the same Kafka broker; each figure is reported only after the sink was
consumed and compared with the source. Run with ``python -m bench.compare [--quick]``.

Modules follow the data flow: ``workloads`` (what is written to the source), ``contenders``
(who reads it), ``verify`` (what arrived at the sink), ``report`` (summary, goals, Markdown).
"""
