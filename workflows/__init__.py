"""Temporal workflows: pure decisions and waiting, no I/O."""
