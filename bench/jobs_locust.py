"""Locust's file for bench.jobs_bench: viewers watching running import jobs, as htmx polls the status fragment.

Not run by hand: bench.jobs_bench starts `locust --headless` with this file and passes, in the environment,
JOBS_BENCH_SESSIONS (session cookies, one per viewer, comma-separated) and JOBS_BENCH_JOBS (the job IDs).
Each viewer signs in with its own session, picks a job, and asks for its status fragment every 2 s
(constant pacing: one request every 2 s whatever the response time, as htmx's `every 2s` does).
"""

from __future__ import annotations

import itertools
import os

from locust import FastHttpUser, constant_pacing, task

SESSIONS = os.environ.get("JOBS_BENCH_SESSIONS", "").split(",")
JOBS = os.environ.get("JOBS_BENCH_JOBS", "").split(",")
_numbers = itertools.count()


class Viewer(FastHttpUser):
    wait_time = constant_pacing(2)

    def on_start(self) -> None:
        number = next(_numbers)
        self.cookie = f"sessionid={SESSIONS[number % len(SESSIONS)]}"
        self.job = JOBS[number % len(JOBS)]

    @task
    def poll_status(self) -> None:
        with self.client.get(
            f"/jobs/{self.job}/status/",
            headers={"HX-Request": "true", "Cookie": self.cookie},
            name="/jobs/[id]/status/",
            catch_response=True,
        ) as response:
            # A lost session answers 200 with HX-Redirect to the login page: that is an error here.
            body = response.text or ""
            if response.status_code != 200 or 'id="job-status"' not in body:
                response.failure(
                    f"status {response.status_code}, not the running job's status fragment"
                )
