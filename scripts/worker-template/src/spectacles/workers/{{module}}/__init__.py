"""The {{name}} worker."""

from spectacles.workers.{{module}}.handlers import COMMAND, answer, reply_for

__all__ = ["COMMAND", "answer", "reply_for"]
