"""Temporal activities: all I/O of a case (database, SMS, documents). Each is idempotent."""
