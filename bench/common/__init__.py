"""Shared benchmark harness: subprocesses, the simulator process, RabbitMQ names, report tables."""
