from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from localaws.server import LocalAWS


class Command(BaseCommand):
    help = (
        "Serve a local S3 (moto) and HealthImaging emulator on one port until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=4566)
        parser.add_argument(
            "--state",
            default=None,
            help="directory that keeps datastores, jobs and S3 objects across restarts",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        server = LocalAWS(
            host=options["host"], port=options["port"], state_dir=options["state"]
        )
        server.start()
        self.stdout.write(
            f"localaws: S3 and HealthImaging at {server.endpoint_url} (Ctrl-C to stop)"
        )
        if options["state"]:
            self.stdout.write(f"localaws: state kept in {options['state']}")
        self.stdout.flush()
        # honcho and docker stop with SIGTERM; a shell's background job may ignore SIGINT. Both end cleanly,
        # so the state directory gets its final save.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: server.request_stop())
        try:
            server.wait()
        finally:
            self.stdout.write("localaws: stopping")
            server.stop()
