"""The DICOM rules, in plain pydicom (no Django, no boto3, no Celery): the scanner, the composer and the editor share them.

- `header`: reading one object's header through ranged GETs without ever trusting a truncated value.
- `header_read`: what a header read returns (`HeaderRead`) and which attributes it decodes.
- `ranged_parser`: one parse of the bytes fetched so far, and what it means when it stops.
- `fetched_bytes`: the fetched byte ranges of one object and the file-like view pydicom reads them through.
- `sniff`: DICOM, DICOM JSON or something else, from an object's name and first bytes.
- `fast`: the scanner's fast path for ordinary headers, equal to `header.read_header` whenever it answers.
- `json_model`: DICOM JSON metadata files (PS3.18 Annex F), checked more strictly than pydicom does.
- `json_values`: the per-value rules of DICOM JSON, one VR at a time.
- `tags`: how a tag is named in messages, and its data-dictionary VR.
- `uids`: the UID rules (PS3.5 §9.1).
- `levels`: the information-model level (patient, study, series, instance) of each attribute.
"""
