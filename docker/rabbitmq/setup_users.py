"""One-shot RabbitMQ set-up of the Compose stack: one user per role, each with least privilege.

The ``rabbit-setup`` service runs this on every ``up`` (it is idempotent: users are created or
their password reset, permissions replaced) through the management HTTP API, with the
administrator (``RABBITMQ_USER``) that only this script and the operator use. Services get:

* the gateway (``RABBITMQ_GATEWAY_USER``): the events, commands and dead-letter exchanges, its
  commands queues, saved sessions, identify locks, and the unrouted/fatal records;
* the workers (``RABBITMQ_WORKER_USER``): their own queues ``{group}.{worker}`` (``.dead`` and one
  helper queue), the holding queues ``{group}.delayed.*`` of ``publish_later`` -- never the
  gateway's queues above;
* the REST proxy: nothing, it does not use RabbitMQ.

Standard library only, so it runs on any Python image. ``python setup_users.py --print`` shows
the permission regexes for a group without touching anything.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

#: The password the admin user had in `make demo` before `make up` generated one (see below).
DEMO_ADMIN_PASSWORD = "dev-password"
#: Names a worker may not take: they are the gateway's (a worker named "sessions" would
#: otherwise read saved sessions through its own queue permissions).
RESERVED = (
    "sessions",
    "identify",
    "commands",
    "dlx",
    "unrouted",
    "oversize",
    "fatal",
    "quota",
    "interactions",
    "delayed",
    "gateway",
)


@dataclass(frozen=True)
class Permission:
    """RabbitMQ's three regexes over exchange and queue names of one virtual host."""

    configure: str
    write: str
    read: str


def permissions(group: str) -> dict[str, Permission]:
    """The permissions of each role for ``group`` (BROKER_GROUP), by role name.

    Names come from docs/wire-format.md: exchanges ``{g}``, ``{g}.commands``, ``{g}.dlx``,
    ``{g}.unrouted``; gateway queues ``{g}.sessions.N``, ``{g}.identify.C.B``,
    ``{g}.commands.shard.N`` (+ ``.dead``), ``{g}.fatal*``, ``{g}.oversize``,
    ``{g}.quota.*``, the cluster's ``{g}.gateway.cluster.C`` exchange, its members' queues
    ``{g}.gateway.cluster.C.*`` and shard leases ``{g}.gateway.shard.C.N``; worker queues
    ``{g}.{w}``, ``{g}.{w}.dead``, ``{g}.{w}.<helper>``. Publishing through the default exchange
    needs write on ``amq.default``; RabbitMQ checks nothing else there (see docs/operations.md).
    """
    g = re.escape(group)
    gateway_queues = (
        r"\.(sessions|identify)\..+|\.commands\.shard\.[0-9]+(\.dead)?|\.fatal.*|\.unrouted.*"
        r"|\.oversize|\.quota\..+|\.gateway\.(cluster|shard)\..+"
    )
    reserved = "|".join(RESERVED)
    # ...and the holding queues of publish_later, {g}.delayed.{routing key}.{ms}ms
    worker_queues = rf"{g}\.(?!({reserved})(\.|$))[^.]+(\.[^.]+)?|{g}\.delayed\..+"
    return {
        "gateway": Permission(
            # declares the exchanges, its queues, the exclusive identify locks
            configure=rf"^{g}(\.commands|\.dlx|{gateway_queues})?$",
            # publishes events (and, as alternate exchange, unrouted), dead letters, sessions
            write=rf"^({g}(\.dlx|{gateway_queues})?|amq\.default)$",
            # consumes commands, peeks sessions; binds to the commands/dead-letter exchanges
            read=rf"^{g}(\.commands|\.dlx|{gateway_queues})?$",
        ),
        # The two halves of HTTP interactions (packages/interactions): the ingress publishes
        # interactions as the gateway would and waits on its exclusive queue for the answer; the
        # REST proxy offers workers' callbacks to it through {g}.interactions (direct reply-to).
        "interactions": Permission(
            configure=rf"^({g}|{g}\.interactions|{g}\.interactions\.ingress\..+)$",
            write=rf"^({g}|{g}\.interactions|{g}\.interactions\.ingress\..+|amq\.default)$",
            read=rf"^({g}\.interactions|{g}\.interactions\.ingress\..+)$",
        ),
        "worker": Permission(
            # its queues, and the events/dead-letter exchanges it declares so it can start first
            configure=rf"^({g}|{g}\.dlx|{worker_queues})$",
            # dead letters, retries (default exchange), gateway commands, delayed re-delivery
            write=rf"^({g}|{g}\.dlx|{g}\.commands|amq\.default|{worker_queues})$",
            read=rf"^({g}|{g}\.dlx|{worker_queues})$",
        ),
    }


@dataclass(frozen=True)
class RoleUser:
    role: str
    name: str
    password: str


class SetupError(Exception):
    """A setting is missing or RabbitMQ refused: the message names what to fix."""


def _required(env: dict[str, str] | os._Environ[str], key: str, default: str = "") -> str:
    value = env.get(key, "").strip() or default
    if not value:
        raise SetupError(f"{key} is empty; set it in .env (see .env.example)")
    return value


def role_users(env: dict[str, str] | os._Environ[str]) -> list[RoleUser]:
    users = [
        RoleUser(
            "gateway",
            _required(env, "RABBITMQ_GATEWAY_USER", "spectacles-gateway"),
            _required(env, "RABBITMQ_GATEWAY_PASSWORD"),
        ),
        RoleUser(
            "worker",
            _required(env, "RABBITMQ_WORKER_USER", "spectacles-worker"),
            _required(env, "RABBITMQ_WORKER_PASSWORD"),
        ),
        RoleUser(
            "interactions",
            _required(env, "RABBITMQ_INTERACTIONS_USER", "spectacles-interactions"),
            _required(env, "RABBITMQ_INTERACTIONS_PASSWORD"),
        ),
    ]
    admin = env.get("RABBITMQ_USER", "")
    names = [u.name for u in users]
    if admin in names or len(set(names)) != len(names):
        raise SetupError(
            "RABBITMQ_USER, RABBITMQ_GATEWAY_USER, RABBITMQ_WORKER_USER and "
            "RABBITMQ_INTERACTIONS_USER must all differ: "
            "a service must not log in as the administrator or as another role"
        )
    return users


class Management:
    """The few management-API calls the set-up needs."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.password = password

    def call(self, method: str, path: str, body: object = None) -> int:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def connect(url: str, admin: str, password: str, deadline: float) -> Management:
    """Log in as the administrator, waiting for the management listener to come up.

    A data volume created by `make demo` still has the demo admin password after `make up`
    generated a new one: then log in with the old one and change it to the configured one.
    """
    api = Management(url, admin, password)
    last = ""
    while time.monotonic() < deadline:
        try:
            status = api.call("GET", "/api/whoami")
        except OSError as exc:  # not listening yet
            last = str(exc)
            time.sleep(1)
            continue
        if status == 200:
            return api
        if status == 401 and password != DEMO_ADMIN_PASSWORD:
            old = Management(url, admin, DEMO_ADMIN_PASSWORD)
            if old.call("GET", "/api/whoami") == 200:
                print(f"rabbit-setup: changing {admin}'s demo password to RABBITMQ_PASSWORD")
                body = {"password": password, "tags": "administrator"}
                if old.call("PUT", f"/api/users/{_quote(admin)}", body) in (201, 204):
                    return api
        if status == 401:
            raise SetupError(
                f"RabbitMQ refused RABBITMQ_USER={admin!r} with RABBITMQ_PASSWORD: its data volume "
                "was created with another password. Put that one in .env, or drop the volume "
                "(`docker compose down -v`, which loses queued messages and saved sessions)"
            )
        last = f"HTTP {status}"
        time.sleep(1)
    raise SetupError(f"the management API at {url} did not answer in time ({last})")


def apply(api: Management, group: str, users: list[RoleUser], vhost: str = "/") -> None:
    perms = permissions(group)
    for user in users:
        status = api.call(
            "PUT", f"/api/users/{_quote(user.name)}", {"password": user.password, "tags": ""}
        )
        if status not in (201, 204):
            raise SetupError(f"creating user {user.name!r} failed: HTTP {status}")
        p = perms[user.role]
        body = {"configure": p.configure, "write": p.write, "read": p.read}
        status = api.call("PUT", f"/api/permissions/{_quote(vhost)}/{_quote(user.name)}", body)
        if status not in (201, 204):
            raise SetupError(f"setting permissions of {user.name!r} failed: HTTP {status}")
        print(f"rabbit-setup: {user.role} user {user.name!r} ready (group {group!r})")


def main(argv: list[str]) -> int:
    group = os.environ.get("BROKER_GROUP", "").strip() or "gateway"
    if argv[1:] == ["--print"]:
        for role, p in permissions(group).items():
            print(
                f"{role}:\n  configure {p.configure}\n  write     {p.write}\n  read      {p.read}"
            )
        return 0
    try:
        users = role_users(os.environ)
        api = connect(
            os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://rabbit:15672"),
            _required(os.environ, "RABBITMQ_USER"),
            _required(os.environ, "RABBITMQ_PASSWORD"),
            time.monotonic() + float(os.environ.get("RABBIT_SETUP_TIMEOUT", "120")),
        )
        apply(api, group, users)
    except SetupError as exc:
        print(f"rabbit-setup: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
