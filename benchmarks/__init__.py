"""Benchmarks of localactors beside a raw pipe, dask.distributed and Ray: ``python benchmarks/run.py``."""
