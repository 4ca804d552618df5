"""email-status-worker: provider webhooks and status polls, normalized into one Kafka stream."""

__version__ = "0.1.0"
