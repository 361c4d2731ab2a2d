"""``georay serve``: flags map one-to-one to :class:`ServeConfig`."""

from georay.command import Command
from georay.serve.config import ServeConfig

COMMANDS = [
    Command(
        "serve",
        ServeConfig,
        "georay.serve.app:run",
        help="online API: POST /v1/geolocate, /v1/chat/completions, GET /healthz (Ray Serve)",
        description="Serve --model over HTTP until Ctrl-C or SIGTERM. For a cluster deployment "
        "use `serve run georay/serve/serve_config.yaml` or `serve deploy` with that file.",
    )
]
