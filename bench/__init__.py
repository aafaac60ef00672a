"""Benchmarks for envoy-django (``make bench``); see bench/run.py."""
