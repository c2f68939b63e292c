"""Cluster mode: several ``tideflow worker`` processes share a Postgres metadata store and
split the units between them through leases with fencing (``docs/cluster.md``).

Data flow: :mod:`.leases` (rows and fencing) → :mod:`.assignment` (who claims what) →
:mod:`.keeper` (one worker's lease thread) → :mod:`.member` (the worker process).
:mod:`.logmode` lays the plan out as source-log and pipeline units (Kafka between them), and
:mod:`.shards` splits a pipeline unit by partition; :mod:`.replay` rewinds a pipeline in the
log.
"""
