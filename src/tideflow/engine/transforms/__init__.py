"""Transforms executed inside pipelines (map/filter, topic routing, fan-out, builtins).

Data flow: ``records.render`` turns a :class:`~tideflow.events.ChangeEvent` into the JSON-able
objects a transform sees; a :class:`~.chain.Chain` runs each transform of the pipeline in order
(``builtins`` first, then code in :mod:`.javascript` or :mod:`.python_sandbox`);
``records.rebuild`` turns each output back into a ChangeEvent for the destination.
"""
