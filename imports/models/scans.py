"""Scans of S3 prefixes: each object version read once (the cache), and the study/series index of a scan."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from imports.dicom.uids import IMPORT_UID_MAX_LENGTH
from imports.models.datastores import (
    DEFAULT_FILES_PER_JOB,
    MAX_BYTES_PER_JOB,
    Datastore,
)


class ObjectHeaderQuerySet(models.QuerySet["ObjectHeader"]):
    def of_scan(self, scan: Scan) -> ObjectHeaderQuerySet:
        """The object versions a scan found (through ScanObject)."""
        return self.filter(
            pk__in=ScanObject.objects.filter(scan=scan).values("header_id")
        )


class ObjectHeader(models.Model):
    """What one S3 object version holds, read once: the scan cache.

    Keyed by (bucket, key, ETag): an object rewritten in place gets a new ETag and so a new read,
    while an unchanged prefix is rescanned without a single GET.
    """

    class Kind(models.TextChoices):
        DICOM = "dicom", "DICOM"
        JSON = "json", "JSON"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OK = "ok", "Read"
        UNREADABLE = "unreadable", "Unreadable"
        NOT_DICOM = "not_dicom", "Not DICOM"
        JSON_VALID = "json_valid", "Valid DICOM JSON"
        JSON_INVALID = "json_invalid", "Invalid DICOM JSON"

    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    # DICOM attributes (empty for other kinds). Patient attributes are PHI: shown masked by default.
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    # Real archives hold instance UIDs longer than DICOM's 64 characters, and HealthImaging imports up to 256.
    sop_instance_uid = models.CharField(max_length=IMPORT_UID_MAX_LENGTH, blank=True)
    study_instance_uid = models.CharField(max_length=IMPORT_UID_MAX_LENGTH, blank=True)
    series_instance_uid = models.CharField(max_length=IMPORT_UID_MAX_LENGTH, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    study_date = models.CharField(max_length=18, blank=True)
    study_description = models.CharField(max_length=256, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=256, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    header_length = models.PositiveBigIntegerField(null=True, blank=True)
    # JSON metadata files: the UIDs they name and what is wrong with them.
    json_study_uids = models.JSONField(default=list, blank=True)
    json_series_uids = models.JSONField(default=list, blank=True)
    json_errors = models.JSONField(default=list, blank=True)
    # The parsed DICOM JSON object (files within SCAN_JSON_MAX_BYTES), so that validation and the
    # preview never read an unchanged file twice.
    json_document = models.JSONField(null=True, blank=True)
    # What reading cost, for the benchmark and the CLI.
    bytes_read = models.PositiveBigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    read_at = models.DateTimeField(auto_now_add=True)
    # False when S3's answer was about access, not content (AccessDenied, a key gone since the
    # listing): the scan that got it keeps it, a later scan reads the object again into a row of its own.
    reusable = models.BooleanField(default=True)

    objects = ObjectHeaderQuerySet.as_manager()

    class Meta:
        constraints = [
            # One reusable result per object version: the cache. Rows that are not reusable belong to
            # the scan that made them and are never overwritten, so a finished scan's results stay put.
            models.UniqueConstraint(
                fields=["bucket", "key", "etag"],
                condition=models.Q(reusable=True),
                name="unique_object_version",
            ),
        ]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Scan(models.Model):
    """One scan of an S3 prefix: its progress, and the index it produced."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # Ended, but S3 did not answer for some objects within SCAN_PATIENCE_S (ScanUnread holds them):
        # not a basis for an import until "read the rest" completes it.
        INCOMPLETE = "incomplete", "Incomplete"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    datastore = models.ForeignKey(
        Datastore,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scans",
    )
    region = models.CharField(max_length=32)
    bucket = models.CharField(max_length=63)
    prefix = models.CharField(max_length=1024, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # Progress counters, updated as the scan goes, read by the polling page.
    objects_listed = models.PositiveIntegerField(default=0)
    objects_done = models.PositiveIntegerField(default=0)
    objects_cached = models.PositiveIntegerField(default=0)
    objects_unreadable = models.PositiveIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    folders = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    bytes_read = models.PositiveBigIntegerField(default=0)
    # Limits at the time of the scan (the datastore's quotas, or the AWS defaults). What counts is read
    # live through `file_limit` and `byte_limit`; these stay for a scan without a datastore.
    max_files = models.PositiveIntegerField(default=DEFAULT_FILES_PER_JOB)
    max_bytes = models.PositiveBigIntegerField(default=MAX_BYTES_PER_JOB)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Origin(models.TextChoices):
        DASHBOARD = "dashboard", "the dashboard"
        CLI = "cli", "the command line (manage.py scan)"

    # Where the scan was started: a CLI scan has no user, and must not read as "system".
    origin = models.CharField(
        max_length=16, choices=Origin.choices, default=Origin.DASHBOARD
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with every progress update; a running scan whose heartbeat stops lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when the last listing page arrived: objects_listed is then the whole prefix.
    listing_finished_at = models.DateTimeField(null=True, blank=True)
    # Set while S3 is not answering and the scan waits for it (the circuit breaker is open).
    paused_since = models.DateTimeField(null=True, blank=True)
    # Objects listed but not read yet because S3 failed transiently (ScanUnread rows, same transaction).
    objects_pending = models.PositiveIntegerField(default=0)
    # Listed from an S3 Inventory instead of ListObjectsV2 (imports.scanning.inventory): its manifest, and
    # when S3 made it, so the page can say how old the listing is.
    inventory_uri = models.CharField(max_length=1024, blank=True)
    inventory_created_at = models.DateTimeField(null=True, blank=True)
    # The fan-out on the workers (imports.scanning.fanout): the coordinator writes one ScanChunk per listing
    # page and seals the scan once the last is written; each chunk that ends adds one to chunks_ended, and
    # whoever makes chunks_ended equal to chunks_total on a sealed scan ends it (fanned_in, claimed once).
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_ended = models.PositiveIntegerField(default=0)
    chunks_sealed = models.BooleanField(default=False)
    fanned_in = models.BooleanField(default=False)
    # Reads in flight each of its chunks may have (0: SCAN_THREADS). Halved when S3 answers SlowDown, at most
    # once a second (read_limit_cut_at), then raised by one with each write that saw none (imports.scanning.shared).
    read_limit = models.PositiveSmallIntegerField(default=0)
    read_limit_cut_at = models.DateTimeField(null=True, blank=True)

    MAX_FOLDERS = 10_000

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["bucket", "prefix", "status"], name="scan_prefix_status_idx"
            )
        ]
        constraints = [
            # One active scan per prefix: a second "Scan" press joins the running one (scan_start).
            models.UniqueConstraint(
                fields=["bucket", "prefix"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_scan_per_prefix",
            ),
        ]

    def __str__(self) -> str:
        return self.uri

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def file_limit(self) -> int:
        """Files one import job may take: the datastore's quota as it is now (raising it in the admin
        counts at once, no rescan), or the limit recorded at scan time for a scan without a datastore."""
        return self.datastore.max_files_per_job if self.datastore else self.max_files

    @property
    def byte_limit(self) -> int:
        """Bytes one import job may take, read live from the datastore like `file_limit`."""
        return self.datastore.max_bytes_per_job if self.datastore else self.max_bytes

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def listing_finished(self) -> bool:
        return self.listing_finished_at is not None

    @property
    def percent_done(self) -> int | None:
        """Objects with a result against the whole prefix; None while the listing is still going."""
        if self.listing_finished_at is None:
            return None
        if not self.objects_listed:
            return 100
        return min(100, 100 * self.objects_done // self.objects_listed)


class ScanObject(models.Model):
    """An object a scan found, pointing at the cached header read for its version."""

    scan = models.ForeignKey(
        Scan, on_delete=models.CASCADE, related_name="scan_objects"
    )
    header = models.ForeignKey(ObjectHeader, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "header"], name="unique_scan_object"
            )
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id}, object header {self.header_id}"


class ScanStudy(models.Model):
    """A study in a completed scan, with the values its instances agree on (or not)."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="studies")
    study_instance_uid = models.CharField(max_length=IMPORT_UID_MAX_LENGTH)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    study_date = models.CharField(max_length=18, blank=True)
    study_description = models.CharField(max_length=256, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    instance_count = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    # {"StudyDescription": ["CT CHEST", "CT Chest"]}: attributes whose instances disagree.
    variants = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["patient_id", "study_date", "study_instance_uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "study_instance_uid"], name="unique_scan_study"
            )
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class ScanSeries(models.Model):
    """A series in a completed scan."""

    study = models.ForeignKey(
        ScanStudy, on_delete=models.CASCADE, related_name="series"
    )
    series_instance_uid = models.CharField(max_length=IMPORT_UID_MAX_LENGTH)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=256, blank=True)
    instance_count = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    transfer_syntaxes = models.JSONField(default=list, blank=True)
    variants = models.JSONField(default=dict, blank=True)
    # One instance's header, the base of the metadata preview.
    sample_header = models.ForeignKey(
        ObjectHeader, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["series_number", "series_instance_uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "series_instance_uid"], name="unique_scan_series"
            )
        ]

    def __str__(self) -> str:
        return self.series_instance_uid


class ScanUnread(models.Model):
    """An object a scan listed but could not read yet because S3 failed transiently.

    Never a result: the object is read again later in the scan, and if S3 stays away past the
    patience these rows are what an Incomplete scan lacks and what "read the rest" reads.
    """

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="unread")
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    # The last failure, for the operator (an AwsError sentence; no file content).
    error = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scan", "key"], name="unique_scan_unread")
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id}: {self.key}"


class ScanChunk(models.Model):
    """A bounded batch of a scan's listed objects, read by one `imports.scan_chunk` task on the `scan` queue.

    The task holds a lease (owner, pid, expiry) renewed with every write; a chunk whose lease ran out lost
    its worker, and beat's recovery queues it again. Its objects already read are then in the cache.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        # Ended without reading everything: the scan was cancelled or ended otherwise meanwhile.
        STOPPED = "stopped", "Stopped"

    ENDED = (State.DONE, State.STOPPED)

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="chunks")
    sequence = models.PositiveIntegerField()
    # [[key, size, etag], ...], as listed; at most SCAN_CHUNK_OBJECTS of them.
    batch = models.JSONField(default=list)
    # The objects are a previous run's ScanUnread rows ("read the rest"): each one read is removed there.
    rest = models.BooleanField(default=False)
    # The ListObjectsV2 token after this chunk's page: where a coordinator that died resumes listing.
    next_token = models.TextField(blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=255, blank=True)
    lease_pid = models.PositiveIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Every process that claimed it, in order (a chunk requeued after its worker died has two).
    pids = models.JSONField(default=list)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    objects_total = models.PositiveIntegerField(default=0)
    objects_done = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    # Its share of SCAN_MAX_INFLIGHT while it runs: the reads its process may have in flight.
    reads = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scan", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "sequence"], name="unique_scan_chunk"
            )
        ]
        indexes = [
            models.Index(
                fields=["state", "lease_expires_at"], name="scan_chunk_lease_idx"
            )
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id}, chunk {self.sequence}"
