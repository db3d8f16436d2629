"""Whole flows over the library: ingest a batch, build training data, score, run the demo.

The CLI, jobs and dashboards call these; they read and write the lake, models and store,
while the modules they call stay pure.
"""
