"""``georay serve``: run the online geolocation API on a local or existing Ray cluster."""

from __future__ import annotations

import argparse
import signal
import sys

from georay.config import add_dataclass_args, from_args


def _run(args: argparse.Namespace) -> int:
    from ray import serve

    from georay.serve.app import ServeConfig, run

    cfg = from_args(ServeConfig, args)
    # `docker stop` / Kubernetes send SIGTERM: shut the app down as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(cfg, blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()  # a running app keeps its CPUs (and GPUs) otherwise
    return 0


def register(subparsers) -> None:
    """Add ``serve`` to the ``georay`` command."""
    from georay.serve.app import ServeConfig

    parser = subparsers.add_parser(
        "serve",
        help="online API: POST /v1/geolocate, /v1/chat/completions, GET /healthz (Ray Serve)",
        description="Serve --model over HTTP until Ctrl-C. For a cluster deployment use "
        "`serve run georay/serve/serve_config.yaml` or `serve deploy` with that file.",
    )
    add_dataclass_args(parser, ServeConfig)
    parser.set_defaults(func=_run)
