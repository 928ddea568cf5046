"""HTTP interactions ingress: Discord's signed interaction requests, relayed like the gateway's.

For bots whose application has an Interactions Endpoint URL: ``spectacles-interactions``
verifies each request (Ed25519), publishes it as INTERACTION_CREATE in the gateway's wire
format, and answers Discord with the worker's response (or a defer when it is slow).
"""

from ._app import EVENT, SESSION_ID, InteractionsIngress
from ._pending import PendingAnswers
from ._settings import ConfigError, IngressSettings
from ._signature import RequestRefused, SignatureVerifier, public_key_from_hex

__all__ = [
    "EVENT",
    "SESSION_ID",
    "ConfigError",
    "IngressSettings",
    "InteractionsIngress",
    "PendingAnswers",
    "RequestRefused",
    "SignatureVerifier",
    "public_key_from_hex",
]
