"""Ingestion of knowledge-base documents, one module per stage; `kb.pipeline.run` lists them in order.

The pipeline imports neither `kb.services` nor `kb.tasks`: services enqueue work through the task
module, tasks call `kb.pipeline.run` (and the recover and re-embed entry points), and recovery
returns version ids for the task to send instead of sending them itself.
"""
