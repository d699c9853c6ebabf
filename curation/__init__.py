"""Curation: turn contributed files into a clean, deduplicated, provenance-stamped dataset version.

``readers`` reads uploads into Arrow batches, ``steps`` and ``pipeline`` transform and filter
them as a recipe says, ``writers`` writes Parquet shards and exclusions, and ``runner`` ties these
together for one version on local disk.
"""
