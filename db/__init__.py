"""The application database: facts of every case, beside Temporal's process state."""
