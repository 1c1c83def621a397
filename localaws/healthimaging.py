"""HealthImaging as a WSGI application: datastores, DICOM import jobs, and reading the image sets they made.

Requests and responses are checked against botocore's service model (localaws.model); job work happens in one
background thread per job (localaws.jobs). Semantics AWS leaves undocumented are listed in localaws/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from localaws import imagesets, jobs, model, s3store
from localaws.faults import CallLog, FaultRegistry
from localaws.jobs import ImageSet
from localaws.model import ServiceError

log = logging.getLogger(__name__)

ACTIVE_JOB_STATUSES = ("SUBMITTED", "IN_PROGRESS")
WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass
class Settings:
    """Tunables; each can be set at start with the environment variable LOCALAWS_<NAME IN CAPITALS>."""

    region: str = "us-east-1"
    job_submitted_delay_s: float = 1.0
    job_in_progress_delay_s: float = 2.0
    datastore_create_delay_s: float = 0.0
    max_files_per_job: int = 5_000
    max_total_bytes_per_job: int = 10 * 1024**3
    max_nested_folders_per_job: int = 10_000
    max_concurrent_jobs_per_datastore: int = 100
    max_datastores: int = 100
    max_metadata_file_bytes: int = 10 * 1024**2
    max_p10_file_bytes: int = 10 * 1024**3

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        settings = cls()
        delay = os.environ.get("LOCALAWS_JOB_DELAY_S")
        if delay is not None:
            settings.job_submitted_delay_s = settings.job_in_progress_delay_s = float(
                delay
            )
        for f in fields(cls):
            raw = os.environ.get(f"LOCALAWS_{f.name.upper()}")
            if raw is not None:
                setattr(settings, f.name, type(getattr(settings, f.name))(raw))
        settings.update(overrides)
        return settings

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, value in values.items():
            setattr(self, name, type(getattr(self, name))(value))

    def limits(self) -> jobs.Limits:
        return jobs.Limits(
            max_files=self.max_files_per_job,
            max_total_bytes=self.max_total_bytes_per_job,
            max_nested_folders=self.max_nested_folders_per_job,
            max_metadata_file_bytes=self.max_metadata_file_bytes,
            max_p10_bytes=self.max_p10_file_bytes,
        )


@dataclass
class Datastore:
    datastore_id: str
    name: str
    status: str
    created_at: float
    updated_at: float
    kms_key_arn: str | None = None
    lossless_storage_format: str | None = None
    client_token: str | None = None
    active_at: float = 0.0


@dataclass
class Job:
    job_id: str
    datastore_id: str
    job_name: str
    status: str
    data_access_role_arn: str
    input_s3_uri: str
    output_s3_uri: str
    submitted_at: float
    client_token: str
    fingerprint: str
    import_configuration: dict[str, Any] | None = None
    ended_at: float | None = None
    message: str | None = None
    fail_message: str | None = None

    @property
    def folder(self) -> str:
        return jobs.job_folder(self.output_s3_uri, self.datastore_id, self.job_id)


@dataclass
class State:
    datastores: dict[str, Datastore] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    image_sets: dict[str, ImageSet] = field(default_factory=dict)


class HealthImaging:
    def __init__(
        self,
        settings: Settings,
        faults: FaultRegistry,
        calls: CallLog,
        state_file: Path | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.faults = faults
        self.calls = calls
        self.state_file = state_file
        self.on_change = on_change or (lambda: None)
        self.lock = threading.RLock()
        self.state = State()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if state_file is not None and state_file.exists():
            self._load(state_file)

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def resume(self) -> None:
        """Restart the work of jobs that were running when the state was saved."""
        with self.lock:
            pending = [
                j.job_id
                for j in self.state.jobs.values()
                if j.status in ACTIVE_JOB_STATUSES
            ]
        for job_id in pending:
            self._spawn(job_id)

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._threads.clear()

    def reset(self) -> None:
        self.stop()
        self._stop = threading.Event()
        with self.lock:
            self.state = State()
            self._save()

    # ---- WSGI ---------------------------------------------------------------------------------------------------

    def __call__(
        self, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        found = model.match_route(method, path)
        if found is None:
            self.calls.record("medical-imaging", f"{method} {path}", 404)
            return _respond(
                start_response,
                404,
                {"message": "Not Found"},
                "UnknownOperationException",
            )
        operation, path_params = found
        extra: dict[str, Any] = {}
        try:
            body = _read_body(environ)
            # Logged before a fault can refuse the call, so a test can prove that retries reuse the token.
            extra["clientToken"] = _client_token(body)
            injected = self.faults.error_for("medical-imaging", operation)
            if injected is not None:
                code, message = injected
                raise ServiceError(code, message or f"Injected {code} for {operation}")
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            params = model.parse_request(operation, path_params, query, body)
            result = getattr(self, _method_name(operation))(params)
            model.check_output(operation, result)
            blob = model.streaming_payload(operation)
        except ServiceError as exc:
            self.calls.record(
                "medical-imaging", operation, exc.status, error=exc.code, **extra
            )
            return _respond(
                start_response, exc.status, {"message": exc.message}, exc.code
            )
        except Exception:
            log.exception("localaws HealthImaging failed on %s", operation)
            self.calls.record(
                "medical-imaging",
                operation,
                500,
                error="InternalServerException",
                **extra,
            )
            return _respond(
                start_response,
                500,
                {"message": "Internal server error"},
                "InternalServerException",
            )
        if operation == "StartDICOMImportJob":
            extra["jobId"] = result["jobId"]
        self.calls.record("medical-imaging", operation, 200, **extra)
        if blob is not None:
            return _respond_blob(start_response, operation, result, blob)
        return _respond(start_response, 200, result)

    # ---- datastores ---------------------------------------------------------------------------------------------

    def create_datastore(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            token = params.get("clientToken")
            if token:
                for ds in self.state.datastores.values():
                    if ds.client_token == token:
                        if ds.name != params["datastoreName"]:
                            raise ServiceError(
                                "ConflictException",
                                "clientToken was already used with other parameters",
                            )
                        return {
                            "datastoreId": ds.datastore_id,
                            "datastoreStatus": "CREATING",
                        }
            if len(self.state.datastores) >= self.settings.max_datastores:
                raise ServiceError(
                    "ServiceQuotaExceededException",
                    f"Datastore quota exceeded: at most {self.settings.max_datastores} datastores per account",
                )
            now = time.time()
            ds = Datastore(
                datastore_id=uuid.uuid4().hex,
                name=params["datastoreName"],
                status="CREATING",
                created_at=now,
                updated_at=now,
                kms_key_arn=params.get("kmsKeyArn"),
                lossless_storage_format=params.get("losslessStorageFormat"),
                client_token=token,
                active_at=now + self.settings.datastore_create_delay_s,
            )
            self.state.datastores[ds.datastore_id] = ds
            self._save()
        return {"datastoreId": ds.datastore_id, "datastoreStatus": "CREATING"}

    def _datastore(self, datastore_id: str) -> Datastore:
        ds = self.state.datastores.get(datastore_id)
        if ds is None:
            raise ServiceError(
                "ResourceNotFoundException", f"Datastore {datastore_id} does not exist"
            )
        if ds.status == "CREATING" and time.time() >= ds.active_at:
            # Creation finishes lazily: whoever looks after the delay sees it ACTIVE.
            ds.status = "ACTIVE"
            ds.updated_at = ds.active_at
        return ds

    def set_datastore_status(self, datastore_id: str, status: str) -> None:
        """For tests of the not-ACTIVE paths; no AWS operation does this."""
        with self.lock:
            ds = self._datastore(datastore_id)
            ds.status = status
            ds.updated_at = time.time()
            self._save()

    def _datastore_dict(self, ds: Datastore, *, full: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "datastoreId": ds.datastore_id,
            "datastoreName": ds.name,
            "datastoreStatus": ds.status,
            "datastoreArn": f"arn:aws:medical-imaging:{self.settings.region}:{s3store.ACCOUNT_ID}:datastore/{ds.datastore_id}",
            "createdAt": ds.created_at,
            "updatedAt": ds.updated_at,
        }
        if full:
            if ds.kms_key_arn:
                data["kmsKeyArn"] = ds.kms_key_arn
            if ds.lossless_storage_format:
                data["losslessStorageFormat"] = ds.lossless_storage_format
        return data

    def get_datastore(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            ds = self._datastore(params["datastoreId"])
            return {"datastoreProperties": self._datastore_dict(ds, full=True)}

    def list_datastores(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for ds_id in list(self.state.datastores):
                self._datastore(ds_id)
            items = sorted(
                self.state.datastores.values(),
                key=lambda d: (d.created_at, d.datastore_id),
            )
            wanted = params.get("datastoreStatus")
            items = [d for d in items if wanted is None or d.status == wanted]
            page, token = _paginate(
                items, lambda d: d.datastore_id, params, scope=f"ds:{wanted}"
            )
            result: dict[str, Any] = {
                "datastoreSummaries": [
                    self._datastore_dict(d, full=False) for d in page
                ]
            }
        if token:
            result["nextToken"] = token
        return result

    # ---- import jobs --------------------------------------------------------------------------------------------

    def start_dicom_import_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_mappings(params.get("importConfiguration"))
        fingerprint = json.dumps(
            {k: v for k, v in params.items() if k != "clientToken"}, sort_keys=True
        )
        with self.lock:
            ds = self._datastore(params["datastoreId"])
            for existing in self.state.jobs.values():
                if existing.client_token == params["clientToken"]:
                    if existing.fingerprint != fingerprint:
                        raise ServiceError(
                            "ConflictException",
                            "clientToken was already used for a different StartDICOMImportJob request",
                        )
                    return _start_response(existing)
            if ds.status != "ACTIVE":
                raise ServiceError(
                    "ConflictException",
                    f"Datastore {ds.datastore_id} is {ds.status}, not ACTIVE",
                )
            owner = params.get("inputOwnerAccountId")
            if owner is not None and owner != s3store.ACCOUNT_ID:
                raise ServiceError(
                    "AccessDeniedException",
                    "The input S3 bucket is not owned by inputOwnerAccountId",
                )
            running = sum(
                1
                for j in self.state.jobs.values()
                if j.datastore_id == ds.datastore_id and j.status in ACTIVE_JOB_STATUSES
            )
            if running >= self.settings.max_concurrent_jobs_per_datastore:
                raise ServiceQuotaError(self.settings.max_concurrent_jobs_per_datastore)
            job_id = uuid.uuid4().hex
            job = Job(
                job_id=job_id,
                datastore_id=ds.datastore_id,
                job_name=params.get("jobName") or f"DicomImport-{job_id}",
                status="SUBMITTED",
                data_access_role_arn=params["dataAccessRoleArn"],
                input_s3_uri=params["inputS3Uri"],
                output_s3_uri=params["outputS3Uri"],
                submitted_at=time.time(),
                client_token=params["clientToken"],
                fingerprint=fingerprint,
                import_configuration=params.get("importConfiguration"),
                fail_message=self.faults.take_fail_job(),
            )
            self.state.jobs[job_id] = job
            self._save()
        self._spawn(job_id)
        return _start_response(job)

    def _job(self, datastore_id: str, job_id: str) -> Job:
        self._datastore(datastore_id)
        job = self.state.jobs.get(job_id)
        if job is None or job.datastore_id != datastore_id:
            raise ServiceError(
                "ResourceNotFoundException",
                f"Import job {job_id} does not exist in datastore {datastore_id}",
            )
        return job

    def get_dicom_import_job(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            job = self._job(params["datastoreId"], params["jobId"])
            props: dict[str, Any] = {
                "jobId": job.job_id,
                "jobName": job.job_name,
                "jobStatus": job.status,
                "datastoreId": job.datastore_id,
                "dataAccessRoleArn": job.data_access_role_arn,
                "inputS3Uri": job.input_s3_uri,
                "outputS3Uri": job.folder,
                "submittedAt": job.submitted_at,
            }
            if job.ended_at is not None:
                props["endedAt"] = job.ended_at
            if job.message:
                props["message"] = job.message
            if job.import_configuration:
                props["importConfiguration"] = job.import_configuration
        return {"jobProperties": props}

    def list_dicom_import_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            ds = self._datastore(params["datastoreId"])
            wanted = params.get("jobStatus")
            items = sorted(
                (
                    j
                    for j in self.state.jobs.values()
                    if j.datastore_id == ds.datastore_id
                ),
                key=lambda j: (-j.submitted_at, j.job_id),
            )
            items = [j for j in items if wanted is None or j.status == wanted]
            page, token = _paginate(
                items,
                lambda j: j.job_id,
                params,
                scope=f"jobs:{ds.datastore_id}:{wanted}",
            )
            summaries = []
            for job in page:
                summary: dict[str, Any] = {
                    "jobId": job.job_id,
                    "jobName": job.job_name,
                    "jobStatus": job.status,
                    "datastoreId": job.datastore_id,
                    "dataAccessRoleArn": job.data_access_role_arn,
                    "submittedAt": job.submitted_at,
                }
                if job.ended_at is not None:
                    summary["endedAt"] = job.ended_at
                if job.message:
                    summary["message"] = job.message
                summaries.append(summary)
        result: dict[str, Any] = {"jobSummaries": summaries}
        if token:
            result["nextToken"] = token
        return result

    # ---- job processing -----------------------------------------------------------------------------------------

    def _spawn(self, job_id: str) -> None:
        thread = threading.Thread(
            target=self._run_job,
            args=(job_id, self._stop),
            name=f"localaws-job-{job_id[:8]}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _run_job(self, job_id: str, stop: threading.Event) -> None:
        with self.lock:
            job = self.state.jobs[job_id]
            if job.status == "SUBMITTED":
                delay = self.settings.job_submitted_delay_s
            else:
                delay = 0.0
        if stop.wait(delay):
            return
        with self.lock:
            job.status = "IN_PROGRESS"
            self._save()
        if stop.wait(self.settings.job_in_progress_delay_s):
            return
        try:
            self._process(job, stop)
        except Exception:
            log.exception("localaws import job %s crashed", job_id)
            self._finish(
                job,
                "FAILED",
                "DICOM import job has failed. INTERNAL_ERROR: the emulator crashed, see its log",
            )

    def _process(self, job: Job, stop: threading.Event) -> None:
        folder = job.folder
        out_bucket, _ = s3store.parse_s3_uri(folder)
        _, in_prefix = s3store.parse_s3_uri(job.input_s3_uri)
        if not s3store.bucket_exists(out_bucket):
            self._finish(
                job,
                "FAILED",
                "DICOM import job has failed. OUTPUT_S3_LOCATION_NOT_ACCESSIBLE: the output bucket does not exist "
                "or the data access role cannot write to it",
            )
            return
        try:
            if job.fail_message:
                raise jobs.JobFailed(job.fail_message)
            scan, _ = jobs.scan(
                job.input_s3_uri, job.import_configuration, self.settings.limits()
            )
        except jobs.JobFailed as exc:
            message = jobs.safe_message(str(exc))
            failures = [jobs.failure(in_prefix, message)]
            jobs.write_results(folder, failures, None)
            summary = jobs.job_summary(
                job_id=job.job_id, datastore_id=job.datastore_id, input_s3_uri=job.input_s3_uri,
                folder=folder, scanned=0, failures=failures, outcome=None,
            )  # fmt: skip
            self._finish(job, "FAILED", message)
            self._write_manifest(folder, summary, stop)
            return
        with self.lock:
            outcome = jobs.assign(
                scan.instances, job.datastore_id, self.state.image_sets, time.time()
            )
        jobs.write_results(folder, scan.failures, outcome)
        summary = jobs.job_summary(
            job_id=job.job_id, datastore_id=job.datastore_id, input_s3_uri=job.input_s3_uri,
            folder=folder, scanned=scan.scanned, failures=scan.failures, outcome=outcome,
        )  # fmt: skip
        self._finish(job, "COMPLETED", None)
        self._write_manifest(folder, summary, stop)

    def _finish(self, job: Job, status: str, message: str | None) -> None:
        with self.lock:
            job.status = status
            job.message = message
            job.ended_at = time.time()
            self._save()

    def _write_manifest(
        self, folder: str, summary: dict[str, Any], stop: threading.Event
    ) -> None:
        delay = self.faults.manifest_delay_s()
        if delay <= 0:
            jobs.write_manifest(folder, summary)
            self.on_change()
            return
        self.on_change()

        def late() -> None:
            # Written even when the server stops first, so a restarted demo still finds it.
            stop.wait(delay)
            try:
                jobs.write_manifest(folder, summary)
            except Exception:
                # A reset may have removed the bucket meanwhile; there is nobody left to tell.
                log.warning(
                    "localaws could not write the delayed manifest to %s", folder
                )
            self.on_change()

        thread = threading.Thread(
            target=late, name="localaws-late-manifest", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    # ---- image sets (the runtime- data plane) --------------------------------------------------------------------

    def _image_set(self, datastore_id: str, image_set_id: str) -> ImageSet:
        self._datastore(datastore_id)
        found = self.state.image_sets.get(image_set_id)
        if found is None or found.datastore_id != datastore_id:
            raise ServiceError(
                "ResourceNotFoundException",
                f"Image set {image_set_id} does not exist in datastore {datastore_id}",
            )
        return found

    def _image_set_arn(self, image_set: ImageSet) -> str:
        return (
            f"arn:aws:medical-imaging:{self.settings.region}:{s3store.ACCOUNT_ID}:"
            f"datastore/{image_set.datastore_id}/imageset/{image_set.image_set_id}"
        )

    def search_image_sets(self, params: dict[str, Any]) -> dict[str, Any]:
        criteria = params.get("searchCriteria")
        with self.lock:
            ds = self._datastore(params["datastoreId"])
            found, sort = imagesets.search(
                (
                    s
                    for s in self.state.image_sets.values()
                    if s.datastore_id == ds.datastore_id
                ),
                criteria,
            )
            page, token = _paginate(
                found,
                lambda s: s.image_set_id,
                params,
                # A digest, not the criteria: they hold patient IDs, which a token should not carry around.
                scope="search:"
                + ds.datastore_id
                + ":"
                + hashlib.sha256(
                    json.dumps(criteria, sort_keys=True).encode()
                ).hexdigest(),
            )
            result: dict[str, Any] = {
                "imageSetsMetadataSummaries": [imagesets.summary(s) for s in page]
            }
        if sort is not None:
            result["sort"] = sort
        if token:
            result["nextToken"] = token
        return result

    def get_image_set(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            image_set = self._image_set(params["datastoreId"], params["imageSetId"])
            entry = imagesets.version(image_set, params.get("versionId"))
            props = imagesets.properties(
                image_set, entry, arn=self._image_set_arn(image_set)
            )
        return {
            "datastoreId": image_set.datastore_id,
            **props,
            "imageSetWorkflowStatus": imagesets.workflow_status(entry),
        }

    def get_image_set_metadata(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            image_set = self._image_set(params["datastoreId"], params["imageSetId"])
            entry = imagesets.version(image_set, params.get("versionId"))
            document = imagesets.metadata_document(image_set, entry)
        return {
            "imageSetMetadataBlob": imagesets.metadata_blob(document),
            "contentType": "application/json",
            "contentEncoding": "gzip",
        }

    def list_image_set_versions(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            image_set = self._image_set(params["datastoreId"], params["imageSetId"])
            entries = imagesets.versions(image_set)
            page, token = _paginate(
                entries,
                lambda e: str(e["versionId"]),
                params,
                scope=f"versions:{image_set.image_set_id}",
            )
            items = [
                {
                    **imagesets.properties(image_set, e, arn=""),
                    "ImageSetWorkflowStatus": imagesets.workflow_status(e),
                }
                for e in page
            ]
        result: dict[str, Any] = {"imageSetPropertiesList": items}
        if token:
            result["nextToken"] = token
        return result

    # ---- image sets (control endpoint) --------------------------------------------------------------------------

    def image_sets(self, datastore_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            found = [
                s
                for s in self.state.image_sets.values()
                if datastore_id is None or s.datastore_id == datastore_id
            ]
            return [
                {
                    "imageSetId": s.image_set_id,
                    "datastoreId": s.datastore_id,
                    "version": s.version,
                    "isPrimary": s.is_primary,
                    "studyInstanceUID": s.study,
                    "seriesInstanceUID": s.series,
                    "numberOfInstances": len(s.instances),
                    "metadata": s.metadata,
                    "createdAt": s.created_at,
                    "updatedAt": s.updated_at,
                }
                for s in sorted(found, key=lambda s: (s.created_at, s.image_set_id))
            ]

    # ---- persistence --------------------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "datastores": [asdict(d) for d in self.state.datastores.values()],
            "jobs": [asdict(j) for j in self.state.jobs.values()],
            "imageSets": [asdict(s) for s in self.state.image_sets.values()],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_file)

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.state = State(
            datastores={d["datastore_id"]: Datastore(**d) for d in data["datastores"]},
            jobs={j["job_id"]: Job(**j) for j in data["jobs"]},
            image_sets={s["image_set_id"]: ImageSet(**s) for s in data["imageSets"]},
        )


class ServiceQuotaError(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "ServiceQuotaExceededException",
            f"Concurrent import job quota exceeded: at most {limit} jobs may be SUBMITTED or IN_PROGRESS per datastore",
        )


def _check_mappings(configuration: dict[str, Any] | None) -> None:
    if not configuration:
        return
    seen: set[tuple[str, str | None]] = set()
    for item in configuration.get("dicomJsonMetadataImportConfiguration", {}).get(
        "dicomMetadataMappings", []
    ):
        key = (item["studyInstanceUID"], item.get("seriesInstanceUID") or None)
        if key in seen:
            # Two files for one study or series would leave the result up to ordering; refuse up front.
            raise ServiceError(
                "ValidationException",
                "dicomMetadataMappings holds two mappings for the same study and series",
            )
        seen.add(key)


def _start_response(job: Job) -> dict[str, Any]:
    return {
        "datastoreId": job.datastore_id,
        "jobId": job.job_id,
        "jobStatus": job.status,
        "submittedAt": job.submitted_at,
    }


def _paginate(
    items: list[Any], key: Callable[[Any], str], params: dict[str, Any], scope: str
) -> tuple[list[Any], str | None]:
    # The token names the last item returned (not an offset), so items added meanwhile neither repeat nor vanish.
    start = 0
    token = params.get("nextToken")
    if token is not None:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if decoded["scope"] != scope:
                raise ValueError("scope")
            ids = [key(i) for i in items]
            start = (
                ids.index(decoded["after"]) + 1
                if decoded["after"] in ids
                else len(items)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError("ValidationException", "Invalid nextToken") from exc
    size = params.get("maxResults") or 50
    page = items[start : start + size]
    more = start + size < len(items)
    next_token = (
        base64.urlsafe_b64encode(
            json.dumps({"scope": scope, "after": key(page[-1])}).encode()
        ).decode()
        if more and page
        else None
    )
    return page, next_token


def _method_name(operation: str) -> str:
    return {
        "CreateDatastore": "create_datastore",
        "GetDatastore": "get_datastore",
        "ListDatastores": "list_datastores",
        "StartDICOMImportJob": "start_dicom_import_job",
        "GetDICOMImportJob": "get_dicom_import_job",
        "ListDICOMImportJobs": "list_dicom_import_jobs",
        "SearchImageSets": "search_image_sets",
        "GetImageSet": "get_image_set",
        "GetImageSetMetadata": "get_image_set_metadata",
        "ListImageSetVersions": "list_image_set_versions",
    }[operation]


def _client_token(body: bytes) -> str | None:
    """The clientToken a request body carries, if it is a JSON object with a text token (None otherwise)."""
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        return None
    token = decoded.get("clientToken") if isinstance(decoded, dict) else None
    return token if isinstance(token, str) else None


def _read_body(environ: WSGIEnviron) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    # Request bodies of these operations are small; a cap stops a hostile client from exhausting memory.
    if length > 1024 * 1024:
        raise ServiceError("ValidationException", "Request body too large")
    return bytes(environ["wsgi.input"].read(length)) if length else b""


def _respond_blob(
    start_response: StartResponse, operation: str, result: dict[str, Any], blob: str
) -> list[bytes]:
    """A streaming payload: the bytes are the body, the members bound to headers become headers."""
    payload = result[blob]
    headers = [
        ("Content-Length", str(len(payload))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    shape = model.operation_model(operation).output_shape
    assert shape is not None
    for name, member in shape.members.items():
        if member.serialization.get("location") == "header" and name in result:
            headers.append((member.serialization["name"], str(result[name])))
    start_response("200 OK", headers)
    return [payload]


def _respond(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    error: str | None = None,
) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    if error:
        headers.append(("x-amzn-ErrorType", error))
    reasons = {200: "OK", 400: "Bad Request", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
               409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error"}  # fmt: skip
    start_response(f"{status} {reasons.get(status, 'Error')}", headers)
    return [payload]
