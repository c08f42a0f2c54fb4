"""Wiring: configuration, the Temporal client, the worker and starting cases."""
