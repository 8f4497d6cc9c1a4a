"""The warm spare: a worker process that has imported what a worker needs, and waits.

Most of a restarted child's time went to starting Python and importing Faust, aiokafka
and River (1.5-3 s of the 4-9 s until its partitions predicted again). The supervisor
keeps one spare process that has done that already and waits on its stdin; when a child
dies, the spare is handed the slot (its environment and the worker's arguments, one JSON
line) and carries on as ``riverbed worker`` would, with the slot's static membership
id, so the group gives it the slot's partitions at once. A new spare is started once
the slot is ready again. Like the pre-forked workers of gunicorn or the spare servers of
Apache's prefork MPM, but one process for the whole machine: a spare costs its memory
(reported in ``/health``).
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["SPARE_COMMAND", "wait_for_slot"]

SPARE_COMMAND = "_spare"  # riverbed _spare: not a user command (not in --help)


def _preload() -> None:
    """Import what a worker imports, build the configured models once, and make a worker
    app once (not started): its check of the libraries' private names and the source
    lines Faust's decorators read are then done (~0.5 s of a worker's start)."""
    import faust.cli.faust  # noqa: F401  (Faust's command line runs the worker)

    import riverbed.main
    from riverbed import models
    from riverbed.config import Settings
    from riverbed.exceptions import ConfigError

    try:
        settings = Settings.from_env()
        for spec in models.lineup(settings.model):
            spec.build()  # imports the River modules the models are made of
        riverbed.main.create_app(settings)
    except (ConfigError, models.UnknownModel):
        pass  # the worker itself says what is wrong, once it has its slot


def wait_for_slot() -> list[str]:
    """In the spare: preload, then wait for a slot; apply its environment and return the
    worker's arguments. Exits (0) when the supervisor closes stdin without one."""
    from riverbed.lifetime import die_with_supervisor

    die_with_supervisor()
    _preload()
    line = sys.stdin.buffer.readline()
    if not line:
        raise SystemExit(0)
    slot = json.loads(line)
    os.environ.clear()
    os.environ.update(slot["env"])
    return list(slot["args"])
