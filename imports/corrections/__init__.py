"""Corrections from a spreadsheet (issue 19): a reconciliation sheet matched against a prefix's scan.

- `sheet`: pure: a CSV or XLSX sheet read into key and value cells, spreadsheet damage named, values held to their VR.
- `matching`: each row matched against the scan index to exactly one study, series or patient; conflicts, no-ops.
- `report`: what `import_job corrections` prints for a row, patient values masked.
"""
