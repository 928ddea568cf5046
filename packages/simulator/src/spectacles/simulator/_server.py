"""`Simulator`: the world, gateway, REST, control API and live view on one aiohttp port."""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

from aiohttp import web

from spectacles.simulator._actions import Actions
from spectacles.simulator._app_commands import AppCommandsApi, CommandRegistry
from spectacles.simulator._config import SimulatorConfig
from spectacles.simulator._control import CONTROL_PREFIX, ControlApi
from spectacles.simulator._flood import Flooder
from spectacles.simulator._gateway import GatewayHub
from spectacles.simulator._interaction_routes import InteractionControlApi, InteractionRestApi
from spectacles.simulator._interactions import Interactions
from spectacles.simulator._ratelimit import RateLimiter
from spectacles.simulator._rest import API_PREFIX, RestApi
from spectacles.simulator._stats import Stats
from spectacles.simulator._ui import ui_page
from spectacles.simulator._webhook_out import ApplicationEditApi, InteractionsEndpoint, SigningKey
from spectacles.simulator._world import World

__all__ = ["GATEWAY_PATH", "RESUME_PATH", "Simulator"]

GATEWAY_PATH: Final = "/gateway"
# A distinct path, so tests can tell that a client resumed on `resume_gateway_url`.
RESUME_PATH: Final = "/resume"
_ANY_HOST: Final = frozenset({"0.0.0.0", "::", ""})


class Simulator:
    """A local Discord. Use `async with Simulator(config) as sim:`; `port=0` picks a free port."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.stats = Stats()
        self.world = World(self.config)
        self.hub = GatewayHub(self.config, self.world, self.stats)
        self.actions = Actions(self.config, self.world, self.hub)
        self.limiter = RateLimiter(self.config)
        self.flooder = Flooder(self.hub, self.world)
        self.commands = CommandRegistry(self.world)
        self.interactions = Interactions(self.config, self.world, self.hub, self.commands)
        self.signing_key = SigningKey()
        self.endpoint = InteractionsEndpoint(self.interactions, self.signing_key)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_get(GATEWAY_PATH, self.hub.handle)
        app.router.add_get(RESUME_PATH, self.hub.handle)
        rest = RestApi(self.actions, self.hub, self.limiter, self.stats)
        application = ApplicationEditApi(self.endpoint, rest.get_application)
        rest.application_fields = application.fields
        rest.extra_routes = [
            *AppCommandsApi(self.commands).routes(),
            *InteractionRestApi(self.interactions).routes(),
            *application.routes(),
        ]
        rest.register(app)
        ControlApi(self.actions, self.hub, self.flooder, self.stats, self.config.seed).register(app)
        InteractionControlApi(self.interactions, self.config.seed).register(app)
        app.router.add_get("/", self._ui)
        app.router.add_get(CONTROL_PREFIX + "/ui", self._ui)
        return app

    async def _ui(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=ui_page(), content_type="text/html")

    # -- URLs -------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """REST base, as a client's `DISCORD_API_URL`."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The websocket URL `/gateway/bot` hands out."""
        return _ws(self.base_url) + GATEWAY_PATH

    @property
    def resume_gateway_url(self) -> str:
        """The `resume_gateway_url` READY carries."""
        return _ws(self.base_url) + RESUME_PATH

    @property
    def control_url(self) -> str:
        """Base of the control API."""
        return self.base_url + CONTROL_PREFIX

    @property
    def ui_url(self) -> str:
        """The live HTML view."""
        return self.base_url + "/"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and serve."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.port = int(bound[1])
        if self.config.public_url:
            self.base_url = self.config.public_url.rstrip("/")
        else:
            host = "127.0.0.1" if self.host in _ANY_HOST else self.host
            host = f"[{host}]" if ":" in host else host
            self.base_url = f"http://{host}:{self.port}"
        self.hub.gateway_url = self.gateway_url
        self.hub.resume_url = self.resume_gateway_url
        self.hub.start()
        if self.config.interactions_url:
            try:
                await self.endpoint.set_url(self.config.interactions_url)
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Cut every connection and release the port."""
        self.interactions.stop()
        await self.endpoint.close()
        await self.hub.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _ws(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url.removeprefix("https://")
    return "ws://" + http_url.removeprefix("http://")
