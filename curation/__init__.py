"""Curation: turn contributed files into a clean, deduplicated, provenance-stamped dataset version.

``readers`` reads uploads into Arrow batches, ``steps`` and ``pipeline`` transform and filter
them as a recipe says, ``writers`` writes Parquet shards and exclusions, ``executors`` runs a
recipe in resumable shards on local processes or Celery workers (``runner.run_local`` is the
one-call form), ``report`` measures the result (GB/T 36344 dimensions, plots) and ``cli`` is
``aidx curate``.
"""
