"""Writing DICOM JSON metadata files in the browser.

- `rows`: pure rows ⇄ DICOM JSON, with VR-aware widgets' values.
- `files`: opening, fixing, saving (with S3's conditional writes) and mapping a file.
"""
