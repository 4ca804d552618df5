"""Benchmarks of email-status-worker against a real Kafka broker and the provider simulator.

`python -m bench [--quick] [--only NAME[,NAME]] [--profile] [--json FILE]`; see bench/README.md.
"""
