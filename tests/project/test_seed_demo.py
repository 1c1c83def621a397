from __future__ import annotations

import importlib.util
import io
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from imports.dicom.json_model import validate_dicom_json
from imports.models import Datastore
from imports.roles import ADMINISTRATOR, OPERATOR, VIEWER
from localaws import democorpus
from localaws.management.commands import seed_demo

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "localaws" / "examples" / "import_demo.py"
)


def run_seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def s3_state(localaws) -> dict[str, str]:
    s3 = localaws.s3_client()
    state = {}
    for bucket in (democorpus.INPUT_BUCKET, democorpus.OUTPUT_BUCKET):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                state[f"{bucket}/{obj['Key']}"] = obj["ETag"]
    return state


def emulator_datastores(localaws):
    return localaws.hi_client().list_datastores()["datastoreSummaries"]


def dicom_objects() -> list[tuple[democorpus.DemoObject, pydicom.Dataset]]:
    return [
        (obj, pydicom.dcmread(io.BytesIO(obj.body), stop_before_pixels=True))
        for obj in democorpus.build_corpus()
        if obj.key.endswith(".dcm")
    ]


def test_running_it_twice_changes_nothing(localaws, db):
    first_output = run_seed()
    first = s3_state(localaws)
    rows = list(Datastore.objects.values())
    users = list(User.objects.values())
    localaws.clear_calls()

    second_output = run_seed()

    assert s3_state(localaws) == first
    assert localaws.calls("s3", "PutObject") == []
    assert localaws.calls("s3", "CreateBucket") == []
    assert localaws.calls("medical-imaging", "CreateDatastore") == []
    assert len(emulator_datastores(localaws)) == 1
    assert list(Datastore.objects.values()) == rows
    assert list(User.objects.values()) == users
    for username, role, _ in seed_demo.USERS:
        assert list(
            User.objects.get(username=username).groups.values_list("name", flat=True)
        ) == [role]
    assert "all 309 objects already there, nothing uploaded" in second_output
    assert "all 309 objects uploaded" in first_output
    # Every run ends with the way in.
    for output in (first_output, second_output):
        assert "http://127.0.0.1:8000/" in output
        assert "admin-demo" in output


def test_it_prints_the_address_the_demo_serves(localaws, db, settings):
    # `make demo PORT=8123` sets SITE_URL from PORT (Makefile); the printed address follows it.
    settings.SITE_URL = "http://127.0.0.1:8123"
    output = run_seed()
    assert "Demo ready: http://127.0.0.1:8123/" in output
    assert "8000" not in output


def test_make_demo_takes_its_ports_from_the_command_line():
    root = Path(__file__).resolve().parents[2]
    procfile = (root / "Procfile.demo").read_text()
    assert "--port $LOCALAWS_PORT" in procfile
    assert "127.0.0.1:$DEMO_PORT" in procfile
    makefile = (root / "Makefile").read_text()
    for line in (
        "PORT ?= 8000",
        "LOCALAWS_PORT ?= 4566",
        "demo: export DEMO_PORT = $(PORT)",
        "demo: export SITE_URL = http://127.0.0.1:$(PORT)",
        "demo: export AWS_ENDPOINT_URL = http://127.0.0.1:$(LOCALAWS_PORT)",
    ):
        assert line in makefile, line


def test_it_uploads_the_corpus_byte_for_byte(localaws, db):
    run_seed()

    etags = {
        f"{democorpus.INPUT_BUCKET}/{o.key}": o.etag for o in democorpus.build_corpus()
    }
    assert s3_state(localaws) == etags
    assert localaws.calls("s3", "CreateBucket") != []


def test_it_creates_an_active_datastore_and_its_dashboard_row(localaws, db):
    run_seed()

    [summary] = emulator_datastores(localaws)
    assert summary["datastoreName"] == "demo-datastore"
    assert summary["datastoreStatus"] == "ACTIVE"
    row = Datastore.objects.get()
    assert row.name == "Demo datastore"
    assert row.datastore_id == summary["datastoreId"]
    assert row.region == "us-east-1"
    assert row.role_arn == "arn:aws:iam::123456789012:role/DemoHealthImagingImportRole"
    assert row.input_s3_uri == "s3://demo-dicom-input/incoming/"
    assert row.output_s3_uri == "s3://demo-import-results/jobs/"


def test_it_repoints_the_row_when_localaws_lost_its_datastore(localaws, db):
    run_seed()
    localaws.server.reset()

    output = run_seed()

    [summary] = emulator_datastores(localaws)
    assert Datastore.objects.get().datastore_id == summary["datastoreId"]
    assert "now points at" in output


def test_it_creates_one_user_per_role_who_can_sign_in(localaws, db, client):
    run_seed()

    for username, role, password in seed_demo.USERS:
        user = User.objects.get(username=username)
        assert [g.name for g in user.groups.all()] == [role]
        assert not user.is_superuser
        # django-axes authenticates only with a request (it counts failures per address).
        assert client.login(request=HttpRequest(), username=username, password=password)
    assert {role for _, role, _ in seed_demo.USERS} == {VIEWER, OPERATOR, ADMINISTRATOR}


def test_it_restores_a_changed_demo_password(localaws, db):
    run_seed()
    admin = User.objects.get(username="admin")
    admin.set_password("something else")
    admin.save()

    output = run_seed()

    admin.refresh_from_db()
    assert admin.check_password("admin-demo")
    assert "User admin: password reset" in output


def test_the_corpus_has_three_patients_five_studies_and_twelve_series():
    instances = dicom_objects()

    assert 250 <= len(instances) <= 350
    assert len({ds.PatientID for _, ds in instances}) == 3
    assert len({ds.StudyInstanceUID for _, ds in instances}) == 5
    assert len({ds.SeriesInstanceUID for _, ds in instances}) == 12
    assert {ds.Modality for _, ds in instances} == {"CT", "MR", "CR"}
    assert {str(ds.file_meta.TransferSyntaxUID) for _, ds in instances} == {
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
    }
    for obj, ds in instances:
        parts = obj.key.split("/")
        assert parts[0] == "incoming"
        assert parts[1] == ds.PatientID
        assert len(parts) == 5


def test_the_corpus_has_small_real_pixel_arrays():
    obj = next(o for o in democorpus.build_corpus() if o.key.endswith(".dcm"))
    ds = pydicom.dcmread(io.BytesIO(obj.body))

    assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (64, 64, 16)
    assert len(ds.PixelData) == 64 * 64 * 2
    assert len(set(ds.PixelData)) > 10


def test_one_study_spells_its_description_two_ways():
    descriptions = defaultdict(set)
    for _, ds in dicom_objects():
        descriptions[ds.StudyInstanceUID].add(ds.StudyDescription)

    inconsistent = {uid: d for uid, d in descriptions.items() if len(d) > 1}
    chest = democorpus.study_uid(democorpus.study_by_key("ct-chest"))
    assert inconsistent == {chest: {"CT CHEST W CONTRAST", "CT Chest w/ contrast"}}


def test_non_dicom_files_sit_in_a_nested_folder():
    others = [
        o.key
        for o in democorpus.build_corpus()
        if not o.key.endswith((".dcm", ".json"))
    ]

    assert len(others) >= 3
    assert all(
        key.startswith("incoming/misc/") and key.count("/") >= 3 for key in others
    )
    assert {key.rsplit(".", 1)[-1] for key in others} >= {"txt", "pdf", "jpg"}


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        (democorpus.STUDY_METADATA_FILE, True),
        (democorpus.SERIES_METADATA_FILE, True),
        (democorpus.MALFORMED_METADATA_FILE, False),
        (democorpus.WRONG_VR_METADATA_FILE, False),
    ],
)
def test_the_metadata_files_have_the_expected_validity(path, valid):
    [obj] = [
        o for o in democorpus.build_corpus() if o.key == democorpus.INPUT_PREFIX + path
    ]

    check = validate_dicom_json(obj.body)

    assert check.is_valid is valid
    if path == democorpus.MALFORMED_METADATA_FILE:
        assert "not valid JSON" in str(check.errors[0])
    if path == democorpus.WRONG_VR_METADATA_FILE:
        assert [str(e) for e in check.errors] == [
            "00081030.vr: VR 'PN' does not match the data dictionary: StudyDescription (0008,1030) is LO"
        ]


def test_the_corpus_is_the_same_bytes_every_time():
    first = [(o.key, o.etag) for o in democorpus.build_corpus()]
    democorpus.build_corpus.cache_clear()

    assert [(o.key, o.etag) for o in democorpus.build_corpus()] == first


@pytest.mark.parametrize(
    ("endpoint", "debug", "refused"),
    [
        ("http://127.0.0.1:4566", False, False),
        ("http://localhost:4566", False, False),
        ("http://[::1]:4566", False, False),
        ("http://localaws:4566", True, False),
        ("http://localaws:4566", False, True),
        ("http://10.0.0.5:4566", False, True),
        ("https://s3.us-east-1.amazonaws.com", True, True),
        ("", True, True),
    ],
)
def test_it_seeds_only_a_local_endpoint(endpoint, debug, refused):
    assert (seed_demo.endpoint_refusal(endpoint, debug=debug) is not None) is refused


def test_it_refuses_a_non_loopback_endpoint_with_debug_off(settings, monkeypatch, db):
    settings.DEBUG = False
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://imaging.example.org:4566")

    with pytest.raises(CommandError, match="not a loopback address and DEBUG is off"):
        run_seed("--wait-for-localaws")

    assert not Datastore.objects.exists()
    assert not User.objects.exists()


def test_it_refuses_when_no_endpoint_is_set_even_with_debug_on(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    with pytest.raises(CommandError, match="would reach real AWS"):
        run_seed()


def test_it_says_when_localaws_does_not_answer(monkeypatch):
    monkeypatch.setattr(seed_demo, "WAIT_FOR_LOCALAWS_S", 0.3)

    # Port 9 (discard) on loopback: nothing listens there on these machines.
    with pytest.raises(CommandError, match="localaws is not answering"):
        run_seed("--wait-for-localaws", "--endpoint-url", "http://127.0.0.1:9")


def test_the_example_script_imports_the_demo_with_its_mappings(localaws, db, capsys):
    run_seed()
    example = load_example()
    assert example.INPUT_S3_URI == democorpus.INPUT_S3_URI
    assert example.OUTPUT_S3_URI == democorpus.OUTPUT_S3_URI
    assert example.DATASTORE_NAME == seed_demo.EMULATOR_DATASTORE_NAME
    assert seed_demo.DATASTORE_ROW["role_arn"] == example.ROLE_ARN
    capsys.readouterr()

    assert example.main(["--poll-interval", "0.05", "--timeout", "30"]) == 0

    printed = capsys.readouterr().out
    assert "objects (" in printed
    assert "COMPLETED" in printed
    assert "job-output-manifest.json:" in printed
    assert '"numberOfScannedFiles": 309' in printed
    assert "SUCCESS/success.ndjson: 302 lines" in printed
    assert "FAILURE/failure.ndjson:" in printed
    assert len(localaws.calls("medical-imaging", "StartDICOMImportJob")) == 1

    datastore_id = Datastore.objects.get().datastore_id
    image_sets = localaws.image_sets(datastore_id)
    chest = democorpus.study_uid(democorpus.study_by_key("ct-chest"))
    brain = democorpus.study_by_key("mr-brain")
    t2 = democorpus.series_uid(brain, brain.series[1])
    chest_descriptions = {
        s["metadata"]["00081030"]["Value"][0]
        for s in image_sets
        if s["studyInstanceUID"] == chest
    }
    assert chest_descriptions == {democorpus.CANONICAL_CHEST_DESCRIPTION}
    [t2_set] = [s for s in image_sets if s["seriesInstanceUID"] == t2]
    assert t2_set["metadata"]["0008103E"]["Value"] == [
        democorpus.T2_OVERRIDE_DESCRIPTION
    ]
    flair = democorpus.series_uid(brain, brain.series[2])
    [flair_set] = [s for s in image_sets if s["seriesInstanceUID"] == flair]
    assert flair_set["metadata"]["0008103E"]["Value"] == ["t2_tirm_tra_dark-fluid"]


def load_example():
    spec = importlib.util.spec_from_file_location("import_demo", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
