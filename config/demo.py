"""`make demo`'s process manager: honcho, with a grace period the Celery worker's shutdown fits in.

On Ctrl-C honcho sends SIGTERM to every process group and SIGKILL 5 s after the first process
stopped. The worker (Procfile.demo) stops cold on that SIGTERM: it cancels its tasks and puts them
back on the queue instead of waiting for a scan to finish. On the file-system broker it notices the
signal only between its 2-second reads of the queue folder and then stops its pool, which took 4-6 s
on a busy laptop, so honcho's 5 s ended in SIGKILL. 15 s is a bound it meets with room to spare.
"""

from __future__ import annotations

import sys

import honcho.manager
from honcho.command import main

honcho.manager.KILL_WAIT = 15

if __name__ == "__main__":
    sys.exit(main())
