"""The planner's promises over random archives: every object in exactly one job (or skipped, never DICOM),
each job within the limits, inputs disjoint, and every mapped file under the input of each job that maps it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imports.campaigns.planner import (
    IndexEntry,
    Limits,
    PlanMapping,
    Source,
    nested_folders,
    plan,
)

SOURCE = Source("archive", "in/")
STAGING = Source("staging", "campaigns/")
FOLDERS = ["", "a/", "a/b/", "a/c/", "d/", "d/e/f/", "g/"]


@st.composite
def archives(draw):
    count = draw(st.integers(min_value=0, max_value=60))
    entries = []
    for n in range(count):
        folder = draw(st.sampled_from(FOLDERS))
        study = draw(st.integers(min_value=1, max_value=4))
        series = draw(st.integers(min_value=1, max_value=3))
        is_dicom = draw(st.integers(min_value=0, max_value=9)) > 0
        entries.append(
            IndexEntry(
                SOURCE,
                f"in/{folder}{n}.{'dcm' if is_dicom else 'json'}",
                draw(st.integers(min_value=1, max_value=100)),
                etag=f"etag{n}",
                study_uid=f"1.{study}" if is_dicom else "",
                series_uid=f"1.{study}.{series}" if is_dicom else "",
                is_dicom=is_dicom,
            )
        )
    json_files = [e for e in entries if not e.is_dicom]
    mappings = []
    if json_files:
        for study in draw(st.sets(st.integers(min_value=1, max_value=4), max_size=3)):
            target = draw(st.sampled_from(json_files))
            mappings.append(PlanMapping(f"1.{study}", "", "archive", target.key))
    limits = Limits(
        max_files=draw(st.integers(min_value=3, max_value=25)),
        max_bytes=draw(st.integers(min_value=300, max_value=3000)),
        max_folders=draw(st.integers(min_value=4, max_value=10)),
    )
    return entries, mappings, limits


def _planned(entries, mappings, limits):
    return plan(
        sources=[SOURCE],
        entries=entries,
        mappings=mappings,
        limits=limits,
        staging=STAGING,
        campaign="1",
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
def test_every_object_is_in_exactly_one_job_or_skipped(archive):
    entries, mappings, limits = archive
    result = _planned(entries, mappings, limits)
    owned = [e.key for job in result.jobs for e in job.objects]
    skipped = [s.entry.key for s in result.skipped]
    assert sorted(owned + skipped) == sorted(e.key for e in entries)
    assert not any(s.entry.is_dicom for s in result.skipped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
def test_each_job_is_within_the_limits_and_counts_what_lies_under_its_input(archive):
    entries, mappings, limits = archive
    result = _planned(entries, mappings, limits)
    if result.problems:
        # A plan that names a problem is refused as a whole (campaign plan exits 1); nothing of it runs.
        assert any("no job within the limits" in p for p in result.problems)
        return
    for job in result.jobs:
        bucket, _, prefix = job.input_uri[len("s3://") :].partition("/")
        if job.staged:
            under = [(c.dest_key, c.size) for c in job.copies]
        else:
            under = [(e.key, e.size) for e in entries if e.key.startswith(prefix)]
        assert len(under) == job.files <= limits.max_files
        assert sum(size for _, size in under) == job.bytes <= limits.max_bytes
        assert (
            nested_folders(key[len(prefix) :] for key, _ in under) <= limits.max_folders
        )
        assert len(job.mappings) <= limits.max_mappings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
def test_job_inputs_are_disjoint(archive):
    entries, mappings, limits = archive
    inputs = [job.input_uri for job in _planned(entries, mappings, limits).jobs]
    for one in inputs:
        for other in inputs:
            if one is not other:
                assert not one.startswith(other)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
def test_a_mapped_file_is_under_the_input_of_every_job_that_maps_it(archive):
    entries, mappings, limits = archive
    result = _planned(entries, mappings, limits)
    for job in result.jobs:
        _, _, prefix = job.input_uri[len("s3://") :].partition("/")
        present = (
            {c.dest_key for c in job.copies}
            if job.staged
            else {e.key for e in entries if e.key.startswith(prefix)}
        )
        studies = {e.study_uid for e in job.objects if e.is_dicom}
        mapped = {m.study_uid for m in job.mappings}
        assert mapped == {m.study_uid for m in mappings} & studies
        for mapping in job.mappings:
            assert prefix + mapping.metadata_file_path in present


def test_a_folder_that_fits_is_one_job_at_its_own_prefix():
    entries = [
        IndexEntry(
            SOURCE, f"in/s{s}/{i}.dcm", 10, study_uid=f"1.{s}", series_uid=f"1.{s}.1"
        )
        for s in (1, 2)
        for i in range(3)
    ]
    result = _planned(entries, [], Limits(max_files=3))
    assert [(j.input_uri, j.staged) for j in result.jobs] == [
        ("s3://archive/in/s1/", False),
        ("s3://archive/in/s2/", False),
    ]
    assert (
        _planned(entries, [], Limits(max_files=6)).jobs[0].input_uri
        == "s3://archive/in/"
    )


def test_a_folder_too_large_for_one_job_is_staged_and_keeps_each_study_together():
    entries = [
        IndexEntry(
            SOURCE,
            f"in/flat/{s}-{i}.dcm",
            10,
            study_uid=f"1.{s}",
            series_uid=f"1.{s}.1",
        )
        for s in (1, 2, 3)
        for i in range(2)
    ]
    result = _planned(entries, [], Limits(max_files=4))
    assert all(job.staged for job in result.jobs)
    for job in result.jobs:
        assert job.input_uri.startswith(f"s3://staging/campaigns/1/{job.number}/")
    studies = [sorted({e.study_uid for e in job.objects}) for job in result.jobs]
    assert studies == [["1.1", "1.2"], ["1.3"]]
    assert result.staged_objects == 6


def test_staging_is_refused_without_a_staging_prefix():
    entries = [
        IndexEntry(SOURCE, f"in/{i}.dcm", 10, study_uid="1.1", series_uid="1.1.1")
        for i in range(5)
    ]
    result = plan(sources=[SOURCE], entries=entries, limits=Limits(max_files=2))
    assert result.problems
    assert result.problems[0].startswith("--staging:")
    assert not plan(
        sources=[SOURCE], entries=entries, limits=Limits(max_files=5)
    ).problems


def test_an_object_larger_than_a_job_takes_is_a_problem():
    entries = [
        IndexEntry(SOURCE, "in/big.dcm", 11, study_uid="1.1", series_uid="1.1.1")
    ]
    result = plan(
        sources=[SOURCE], entries=entries, limits=Limits(max_bytes=10), staging=STAGING
    )
    assert any("more than a job takes" in p for p in result.problems)
