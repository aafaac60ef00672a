"""Logging for Envoy's long-running commands, without overriding what a site configured."""

from __future__ import annotations

import logging

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def configure(verbosity: int) -> None:
    """Show Envoy's logs at the level ``-v`` asks for, unless the site's LOGGING already decided.

    A site that gave the root logger handlers keeps them; one that set a
    level on the ``envoy_django`` logger keeps it (``-v`` never overrides
    LOGGING).
    """
    level = VERBOSITY_LEVELS.get(verbosity, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    envoy = logging.getLogger("envoy_django")
    if envoy.level == logging.NOTSET:
        envoy.setLevel(level)
