"""Benchmark of the campaign planner (issue 21, "Performance"): planning 100,000 indexed objects in < 10 s.

    python -m bench.campaign_bench [--objects 100000] [--flat 20000] [--max-files 5000] [--repeat 3]

The planner is pure (imports.campaigns.planner), so this needs no database and no localaws: it builds the index
entries a scan would store, in memory. The archive: `--flat` instances of one series in a single folder (which
must be staged), the rest as studies of 4 series × 50 instances under `<patient>/<study>/<series>/`, with one
study-level metadata file per tenth study in `meta/` (each mapped, so each of those studies' jobs is staged with
a copy of its file). It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from imports.campaigns.planner import IndexEntry, Limits, PlanMapping, Source, plan

SOURCE = Source("archive", "export/")
STAGING = Source("staging", "campaigns/")
TARGET_S = 10.0


def archive(objects: int, flat: int) -> tuple[list[IndexEntry], list[PlanMapping]]:
    entries = [
        IndexEntry(
            SOURCE, f"export/flat/{n}.dcm", 500_000, f"f{n}", "2.25.1", "2.25.1.1"
        )
        for n in range(flat)
    ]
    mappings = []
    study = 0
    while len(entries) < objects:
        study += 1
        uid = f"2.25.9.{study}"
        folder = f"export/p{study // 3}/s{study}/"
        for series in range(4):
            for n in range(50):
                entries.append(
                    IndexEntry(
                        SOURCE,
                        f"{folder}{series}/{n}.dcm",
                        500_000,
                        "e",
                        uid,
                        f"{uid}.{series}",
                    )
                )
        if study % 10 == 0:
            key = f"export/meta/{study}.json"
            entries.append(IndexEntry(SOURCE, key, 400, "j", is_dicom=False))
            mappings.append(PlanMapping(uid, "", "archive", key))
    return entries[: objects + len(mappings)], mappings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--flat", type=int, default=20_000)
    parser.add_argument("--max-files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    entries, mappings = archive(args.objects, args.flat)
    times = []
    result = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = plan(
            sources=[SOURCE],
            entries=entries,
            mappings=mappings,
            limits=Limits(max_files=args.max_files),
            staging=STAGING,
            campaign="1",
        )
        times.append(time.perf_counter() - started)
    assert result is not None
    staged = sum(1 for job in result.jobs if job.staged)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {args.repeat} runs\n"
    )
    print(
        "| objects | mappings | jobs | staged jobs | copies | problems | median s | max s | target s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(entries):,} | {len(mappings):,} | {len(result.jobs):,} | {staged:,} | {result.staged_objects:,} "
        f"| {len(result.problems)} | {statistics.median(times):.2f} | {max(times):.2f} | {TARGET_S:.0f} |"
    )
    if max(times) > TARGET_S:
        print(
            f"\nMissed: planning took {max(times):.2f} s, more than {TARGET_S:.0f} s."
        )


if __name__ == "__main__":
    main()
