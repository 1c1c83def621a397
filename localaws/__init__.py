"""Local stand-ins for S3 and AWS HealthImaging, for the demo and the tests; never used in production.

Import `localaws.server.LocalAWS` to run one in-process; see localaws/README.md.
"""

from __future__ import annotations
