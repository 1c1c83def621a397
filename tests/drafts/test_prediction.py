"""Predicting each series' outcome against image sets that real localaws import jobs made (over HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from imports.drafts import prediction, preview
from imports.drafts import services as drafts
from imports.models import Datastore, ImportDraft, ScanSeries
from localaws.testing import LocalAWSHandle
from tests.builders import (
    INPUT,
    OUTPUT,
    SERIES_A1,
    SERIES_A2,
    SERIES_B1,
    SERIES_FILE,
    STUDY_A,
    STUDY_B,
    STUDY_FILE,
    make_localaws_datastore,
    scan_prefix,
    seed_prefix,
    stored_before,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(db: None, localaws: LocalAWSHandle) -> LocalAWSHandle:
    cache.clear()
    seed_prefix(localaws)
    return localaws


@pytest.fixture
def store(world: LocalAWSHandle) -> Datastore:
    return make_localaws_datastore(world)


@pytest.fixture
def draft(world: LocalAWSHandle, store: Datastore, alice: User) -> ImportDraft:
    scan_prefix()
    return drafts.draft_start(
        actor=alice, datastore=store, input_s3_uri=INPUT, output_s3_uri=OUTPUT
    )


def outcomes(result: prediction.Prediction) -> dict[str, tuple[Any, ...]]:
    return {s.series_instance_uid: (s.outcome, s.differs) for s in result.series}


def map_file(
    draft: ImportDraft, alice: User, study: str, series: str, path: str
) -> ImportDraft:
    return drafts.draft_assign(
        draft=draft,
        actor=alice,
        version=draft.version,
        targets=[(study, series)],
        path=path,
    )


def test_every_series_is_new_in_an_empty_datastore(
    draft: ImportDraft, world: LocalAWSHandle
) -> None:
    result = prediction.draft_predict(draft=draft)
    assert outcomes(result) == {
        SERIES_A1: ("new", []),
        SERIES_A2: ("new", []),
        SERIES_B1: ("new", []),
    }
    assert (result.new, result.adds_to, result.non_primary) == (3, 0, 0)
    # One SearchImageSets per study, and no metadata to read.
    assert len(world.calls("medical-imaging", "SearchImageSets")) == 2
    assert world.calls("medical-imaging", "GetImageSetMetadata") == []


def test_a_series_stored_with_the_same_attributes_adds_to_its_image_set(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore
) -> None:
    stored_before(world, store, A1={}, B1={})
    result = prediction.draft_predict(draft=draft)
    assert outcomes(result) == {
        SERIES_A1: ("adds_to", []),
        SERIES_A2: ("new", []),
        SERIES_B1: ("adds_to", []),
    }
    image_set = next(
        s for s in world.image_sets() if s["seriesInstanceUID"] == SERIES_A1
    )
    a1 = next(s for s in result.series if s.series_instance_uid == SERIES_A1)
    assert (a1.image_set_id, a1.image_set_version) == (image_set["imageSetId"], 1)


def test_a_series_stored_with_another_patient_id_makes_a_non_primary_set(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore
) -> None:
    stored_before(
        world, store, A1={"PatientID": "PAT-OTHER", "AccessionNumber": "ACC-9"}
    )
    result = prediction.draft_predict(draft=draft)
    a1 = next(s for s in result.series if s.series_instance_uid == SERIES_A1)
    assert a1.outcome == "non_primary"
    assert a1.differs == ["PatientID", "AccessionNumber"]
    assert [(d.keyword, d.imported, d.stored) for d in a1.differences] == [
        ("PatientID", "PAT-1", "PAT-OTHER"),
        ("AccessionNumber", "ACC-1", "ACC-9"),
    ]
    assert a1.image_set_id is not None
    assert result.non_primary == 1


def test_a_mapping_file_that_overrides_the_conflicting_value_predicts_adding_to_it(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore, alice: User
) -> None:
    """Series A2 was stored with the series file's description; without the file it would fork."""
    stored_before(world, store, A2={"StudyDescription": "SERIES WINS"})
    before = prediction.draft_predict(draft=draft)
    assert outcomes(before)[SERIES_A2] == ("non_primary", ["StudyDescription"])
    draft = map_file(draft, alice, STUDY_A, "", STUDY_FILE)
    draft = map_file(draft, alice, STUDY_A, SERIES_A2, SERIES_FILE)
    after = prediction.draft_predict(draft=draft)
    assert outcomes(after)[SERIES_A2] == ("adds_to", [])
    # The study file sets A1's description to what A1 was not stored with: nothing stored for A1, so new.
    assert outcomes(after)[SERIES_A1] == ("new", [])


def test_a_studys_answer_is_cached_for_the_drafts_content(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore, alice: User
) -> None:
    stored_before(world, store, A1={})
    prediction.draft_predict(draft=draft)
    world.clear_calls()
    prediction.draft_predict(draft=draft)
    assert world.calls("medical-imaging") == []
    draft = map_file(draft, alice, STUDY_A, "", STUDY_FILE)
    prediction.draft_predict(draft=draft)
    assert len(world.calls("medical-imaging", "SearchImageSets")) == 2


def test_studies_looked_up_at_once_predict_what_one_at_a_time_predicts(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore, settings: Any
) -> None:
    stored_before(world, store, A1={"PatientID": "PAT-OTHER"}, B1={})
    assert draft.scan is not None
    settings.PREDICTION_CONCURRENCY = 1
    one_at_a_time = prediction.series_predict(
        scan=draft.scan, datastore=store, mappings=[]
    )
    world.clear_calls()
    settings.PREDICTION_CONCURRENCY = 4
    at_once = prediction.series_predict(scan=draft.scan, datastore=store, mappings=[])
    assert (
        outcomes(at_once)
        == outcomes(one_at_a_time)
        == {
            SERIES_A1: ("non_primary", ["PatientID"]),
            SERIES_A2: ("new", []),
            SERIES_B1: ("adds_to", []),
        }
    )
    # Still one SearchImageSets a study, and one metadata read an image set holding a series.
    assert len(world.calls("medical-imaging", "SearchImageSets")) == 2
    assert len(world.calls("medical-imaging", "GetImageSetMetadata")) == 2
    # The order of the page does not depend on which lookup answered first.
    assert [s.series_instance_uid for s in at_once.series] == [
        s.series_instance_uid for s in one_at_a_time.series
    ]


def test_a_study_that_fails_leaves_it_and_every_study_after_it_unpredicted(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore, settings: Any
) -> None:
    """Whichever lookup in flight fails, the answer reads as one-at-a-time would: the studies before it (in UID
    order) predicted, it and those after it not, all with its reason; and its failure is not cached."""
    stored_before(world, store, A1={}, B1={})
    settings.PREDICTION_CONCURRENCY = 4
    world.add_fault(
        service="medical-imaging",
        operation="GetImageSetMetadata",
        error="AccessDeniedException",
        count=1,
    )
    result = prediction.draft_predict(draft=draft)
    predicted = [s.outcome is not None for s in result.series]
    assert result.unpredicted >= 1
    assert predicted == sorted(
        predicted, reverse=True
    )  # a run of True, then only False
    assert {s.reason for s in result.series if s.outcome is None} == {result.reason}
    assert "medical-imaging:GetImageSetMetadata" in result.reason
    assert prediction.draft_predict(draft=draft).unpredicted == 0


def test_throttling_past_the_budget_leaves_the_series_unpredicted_with_the_reason(
    draft: ImportDraft, world: LocalAWSHandle, settings: Any
) -> None:
    settings.PREDICTION_CONCURRENCY = 1
    world.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="ThrottlingException",
        count=50,
    )
    result = prediction.draft_predict(draft=draft)
    assert {s.outcome for s in result.series} == {None}
    assert result.unpredicted == 3
    assert "throttling" in result.reason
    assert STUDY_A not in result.reason
    # The budget: one study's tries, then no more calls for the others.
    assert len(world.calls("medical-imaging", "SearchImageSets")) == 3
    assert result.series[0].as_json()["reason"] == result.reason


def test_throttling_with_lookups_at_once_stops_at_the_studies_already_in_flight(
    draft: ImportDraft, world: LocalAWSHandle, settings: Any
) -> None:
    settings.PREDICTION_CONCURRENCY = 4
    world.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="ThrottlingException",
        count=50,
    )
    result = prediction.draft_predict(draft=draft)
    assert result.unpredicted == 3
    assert "throttling" in result.reason
    # At most the two studies' tries (both were in flight), never more.
    assert 3 <= len(world.calls("medical-imaging", "SearchImageSets")) <= 6


def test_access_denied_says_which_permissions_are_missing(
    draft: ImportDraft, world: LocalAWSHandle, settings: Any
) -> None:
    # One lookup at a time, so that the one refused call is the first study's.
    settings.PREDICTION_CONCURRENCY = 1
    world.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="AccessDeniedException",
    )
    result = prediction.draft_predict(draft=draft)
    assert result.unpredicted == 3
    assert "medical-imaging:SearchImageSets" in result.reason


def test_metadata_not_consistent_yet_leaves_the_prediction_for_later(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore
) -> None:
    stored_before(world, store, A1={})
    world.add_fault(
        service="medical-imaging",
        operation="GetImageSetMetadata",
        error="ConflictException",
        message="Requested ImageSet metadata is not consistent yet. Please retry after a few seconds.",
    )
    result = prediction.draft_predict(draft=draft)
    assert result.unpredicted == 3
    assert "not consistent yet" in result.reason
    # Nothing was cached: the next prediction asks again, and answers.
    assert prediction.draft_predict(draft=draft).unpredicted == 0


def test_a_json_line_names_every_field_of_the_interface(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore
) -> None:
    stored_before(world, store, A1={"PatientSex": "M"})
    lines = {
        s.series_instance_uid: s.as_json()
        for s in prediction.draft_predict(draft=draft).series
    }
    assert lines[SERIES_B1] == {
        "kind": "prediction",
        "study_instance_uid": STUDY_B,
        "series_instance_uid": SERIES_B1,
        "outcome": "new",
        "image_set_id": None,
        "image_set_version": None,
        "differs": [],
    }
    # PatientSex is not indexed by the scan and no preview read the header: it is not compared.
    assert lines[SERIES_A1]["outcome"] == "adds_to"


def test_a_header_a_preview_read_already_adds_the_attributes_the_scan_does_not_index(
    draft: ImportDraft, world: LocalAWSHandle, store: Datastore
) -> None:
    stored_before(world, store, A1={"PatientSex": "M"})
    a1 = ScanSeries.objects.get(study__scan=draft.scan, series_instance_uid=SERIES_A1)
    preview.series_preview(draft=draft, series=a1)
    result = prediction.draft_predict(draft=draft)
    assert outcomes(result)[SERIES_A1] == ("non_primary", ["PatientSex"])
