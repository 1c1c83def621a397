"""Objects read as streams, as they are consumed: an S3 Inventory's data files can be gigabytes.

The same client, credentials and error translation as every other call (imports.aws.client).
"""

from __future__ import annotations

import io
from typing import Any

from imports.aws.client import _AWS_ERRORS, _translate, s3_client


class S3Stream(io.RawIOBase):
    """An object's body as a file, read as it is consumed (an S3 Inventory file can be gigabytes).

    Read errors come out as AwsError, like every other call here.
    """

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except _AWS_ERRORS as error:
            raise _translate(error, self._where) from error
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def s3_open(*, region: str, bucket: str, key: str) -> io.BufferedReader:
    """An object to read as a stream: `with s3_open(...) as body: gzip.open(body)`."""
    where = f"Reading s3://{bucket}/{key}"
    try:
        response = s3_client(region).get_object(Bucket=bucket, Key=key)
    except _AWS_ERRORS as error:
        raise _translate(error, where) from error
    return io.BufferedReader(S3Stream(response["Body"], where), buffer_size=256 * 1024)
