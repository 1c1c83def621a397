from __future__ import annotations

from django.urls import path

from imports.views import (
    audit,
    browse,
    campaigns,
    corrections,
    dashboard,
    drafts,
    editor,
    health,
    jobs,
    metrics,
    review,
    scans,
)

app_name = "imports"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    # For load balancers: no login, no patient data, no AWS call.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # For Prometheus: no login, a bearer token (DJANGO_METRICS_TOKEN); 404 while none is set.
    path("metrics", metrics.metrics, name="metrics"),
    path("browse/", browse.browse, name="browse"),
    # /scans/
    path("scans/", scans.scan_list, name="scan_list"),
    path("scans/start/", scans.scan_start, name="scan_start"),
    path("scans/<int:pk>/", scans.scan_detail, name="scan_detail"),
    path("scans/<int:pk>/progress/", scans.scan_progress, name="scan_progress"),
    path("scans/<int:pk>/cancel/", scans.scan_cancel, name="scan_cancel"),
    path("scans/<int:pk>/read-rest/", scans.scan_read_rest, name="scan_read_rest"),
    path("scans/<int:pk>/reveal/", scans.scan_reveal, name="scan_reveal"),
    path("scans/<int:pk>/objects.csv", scans.scan_export, name="scan_export"),
    path("scans/<int:pk>/new-import/", drafts.draft_from_scan, name="draft_from_scan"),
    # /campaigns/
    path("campaigns/", campaigns.campaign_list, name="campaign_list"),
    path("campaigns/plan/", campaigns.campaign_plan, name="campaign_plan"),
    path("campaigns/<int:pk>/", campaigns.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:pk>/start/", campaigns.campaign_start, name="campaign_start"),
    path(
        "campaigns/<int:pk>/progress/",
        campaigns.campaign_progress,
        name="campaign_progress",
    ),
    path(
        "campaigns/<int:pk>/objects.csv",
        campaigns.campaign_export,
        {"export_format": "csv"},
        name="campaign_export",
    ),
    path(
        "campaigns/<int:pk>/objects.jsonl",
        campaigns.campaign_export,
        {"export_format": "jsonl"},
        name="campaign_export_jsonl",
    ),
    path(
        "campaigns/<int:pk>/retry-failed/",
        campaigns.campaign_retry_failed,
        name="campaign_retry_failed",
    ),
    path("campaigns/<int:pk>/pause/", campaigns.campaign_pause, name="campaign_pause"),
    path(
        "campaigns/<int:pk>/resume/", campaigns.campaign_resume, name="campaign_resume"
    ),
    path(
        "campaigns/<int:pk>/cancel/", campaigns.campaign_cancel, name="campaign_cancel"
    ),
    path("campaigns/<int:pk>/clean/", campaigns.campaign_clean, name="campaign_clean"),
    # /drafts/
    path("drafts/", drafts.draft_list, name="draft_list"),
    path("drafts/new/", drafts.draft_new, name="draft_new"),
    path("drafts/<int:pk>/", drafts.draft_detail, name="draft_detail"),
    path("drafts/<int:pk>/progress/", drafts.draft_progress, name="draft_progress"),
    path("drafts/<int:pk>/assign/", drafts.draft_assign, name="draft_assign"),
    path("drafts/<int:pk>/unmap/", drafts.draft_unmap, name="draft_unmap"),
    path(
        "drafts/<int:pk>/accept/",
        drafts.draft_accept_suggestions,
        name="draft_accept_suggestions",
    ),
    path("drafts/<int:pk>/csv/", drafts.draft_upload_csv, name="draft_upload_csv"),
    path("drafts/<int:pk>/mappings.csv", drafts.draft_export, name="draft_export"),
    path("drafts/<int:pk>/settings/", drafts.draft_settings, name="draft_settings"),
    path("drafts/<int:pk>/approve/", drafts.draft_approve, name="draft_approve"),
    path(
        "drafts/<int:pk>/corrections/",
        corrections.draft_corrections,
        name="draft_corrections",
    ),
    path(
        "drafts/<int:pk>/corrections/write/",
        corrections.draft_corrections_write,
        name="draft_corrections_write",
    ),
    path(
        "drafts/<int:pk>/refresh/",
        drafts.draft_refresh_index,
        name="draft_refresh_index",
    ),
    path("drafts/<int:pk>/delete/", drafts.draft_delete, name="draft_delete"),
    path("drafts/<int:pk>/preview/", review.draft_preview, name="draft_preview"),
    path("drafts/<int:pk>/reveal/", review.draft_reveal, name="draft_reveal"),
    path("drafts/<int:pk>/confirm/", review.draft_confirm, name="draft_confirm"),
    path(
        "drafts/<int:pk>/prediction/",
        review.draft_prediction,
        name="draft_prediction",
    ),
    # /jobs/
    path("jobs/", jobs.job_list, name="job_list"),
    path(
        "jobs/export.csv",
        jobs.job_export,
        {"export_format": "csv"},
        name="job_export",
    ),
    path(
        "jobs/export.jsonl",
        jobs.job_export,
        {"export_format": "jsonl"},
        name="job_export_jsonl",
    ),
    path("jobs/active/", jobs.jobs_active, name="jobs_active"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/status/", jobs.job_status, name="job_status"),
    path("jobs/<int:pk>/results/", jobs.job_results, name="job_results"),
    path(
        "jobs/<int:pk>/results.<str:fmt>",
        jobs.job_results_download,
        name="job_results_download",
    ),
    path("jobs/<int:pk>/retry/", jobs.job_retry_failed, name="job_retry_failed"),
    path("jobs/<int:pk>/verification/", jobs.job_verification, name="job_verification"),
    path("jobs/<int:pk>/verify/", jobs.job_verify_again, name="job_verify_again"),
    path("jobs/<int:pk>/record.json", jobs.job_record_download, name="job_record"),
    path("jobs/<int:pk>/clone/", jobs.job_clone, name="job_clone"),
    path("drafts/<int:pk>/editor/", editor.editor_page, name="editor"),
    path("drafts/<int:pk>/editor/row/", editor.editor_row, name="editor_row"),
    path("editor/tags/", editor.editor_tags, name="editor_tags"),
    # /audit/
    path("audit/", audit.audit_list, name="audit_list"),
    path(
        "audit/export.csv",
        audit.audit_export,
        {"export_format": "csv"},
        name="audit_export",
    ),
    path(
        "audit/export.jsonl",
        audit.audit_export,
        {"export_format": "jsonl"},
        name="audit_export_jsonl",
    ),
]
