"""Typed errors of the simulated Discord, each carrying the JSON error code Discord would send."""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "SimulatorError",
    "UnknownEntityError",
    "ValidationError",
]

# Discord's JSON error codes for unknown resources (discord-protocol.md section 9).
_UNKNOWN_CODES: Final[dict[str, int]] = {
    "channel": 10003,
    "guild": 10004,
    "member": 10007,
    "message": 10008,
    "user": 10013,
    "ban": 10026,
}


class SimulatorError(Exception):
    """Base class: `status`, `code` and `message` become Discord's JSON error body."""

    status: int = 400
    code: int = 0

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends for this error."""
        return {"code": self.code, "message": self.message}


class UnknownEntityError(SimulatorError):
    """An id that names nothing in the world (Discord: 404 with a 100xx code)."""

    status = 404

    def __init__(self, kind: str, entity_id: int | str) -> None:
        self.kind = kind
        self.entity_id = entity_id
        self.code = _UNKNOWN_CODES[kind]
        super().__init__(f"Unknown {kind.capitalize()}")


class ValidationError(SimulatorError):
    """A request body Discord would refuse; `errors` has Discord's nested error shape."""

    status = 400

    def __init__(self, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        self.code = code
        self.errors = errors
        super().__init__(message)

    @classmethod
    def field(cls, name: str, error_code: str, message: str) -> ValidationError:
        """A 50035 "Invalid Form Body" error for one field."""
        errors = {name: {"_errors": [{"code": error_code, "message": message}]}}
        return cls(50035, "Invalid Form Body", errors)

    def body(self) -> dict[str, Any]:
        """Include the per-field errors when there are any."""
        data = super().body()
        if self.errors is not None:
            data["errors"] = self.errors
        return data
