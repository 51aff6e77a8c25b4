"""Example custom steps for nflow; the node types live in :mod:`nflow_steps_example.steps`."""
