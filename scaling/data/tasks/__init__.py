"""Injected synthetic tasks (registry)."""
