"""Polling: the adaptive limiter, the schedulers (date windows, id batches), the runner (I/O)."""
