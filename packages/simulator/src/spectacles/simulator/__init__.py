"""A local Discord: gateway websocket, REST API, control API and a live view on one port.

Start one with ``async with Simulator(SimulatorConfig(...)) as sim:`` and point a client at
``sim.api_url`` / ``sim.gateway_url``; drive it through ``sim.control_url`` (``/_sim/...``).
"""

from spectacles.simulator._config import (
    DEFAULT_ROUTE_LIMITS,
    RouteLimit,
    SimulatorConfig,
    SimulatorConfigError,
)
from spectacles.simulator._entities import Channel, Guild, Member, Message, Role, User
from spectacles.simulator._errors import SimulatorError, UnknownEntityError, ValidationError
from spectacles.simulator._flood import FloodResult
from spectacles.simulator._server import GATEWAY_PATH, RESUME_PATH, Simulator
from spectacles.simulator._stats import Stats
from spectacles.simulator._world import World

__all__ = [
    "DEFAULT_ROUTE_LIMITS",
    "GATEWAY_PATH",
    "RESUME_PATH",
    "Channel",
    "FloodResult",
    "Guild",
    "Member",
    "Message",
    "Role",
    "RouteLimit",
    "Simulator",
    "SimulatorConfig",
    "SimulatorConfigError",
    "SimulatorError",
    "Stats",
    "UnknownEntityError",
    "User",
    "ValidationError",
    "World",
]
