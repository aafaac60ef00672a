"""Helpers for testing projects that use envoy-django (no Django needed to import)."""
