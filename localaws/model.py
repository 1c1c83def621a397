"""The medical-imaging service model as botocore ships it: routes, request parsing, input and output checks.

Constraints are read from the installed model at runtime, never copied, so the emulator follows botocore
updates. botocore's own client validator skips max lengths, patterns and enums; the real service does not,
and neither does this module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StructureShape,
)

SERVICE_NAME = "medical-imaging"

# The operations this emulator answers: the control plane, and the read-only part of the image-set data plane
# (`runtime-` host-prefixed on AWS). Frames, copies, updates and deletes are out of scope.
OPERATIONS = (
    "CreateDatastore",
    "GetDatastore",
    "ListDatastores",
    "StartDICOMImportJob",
    "GetDICOMImportJob",
    "ListDICOMImportJobs",
    "SearchImageSets",
    "GetImageSet",
    "GetImageSetMetadata",
    "ListImageSetVersions",
)


class ServiceError(Exception):
    """An AWS error as the service would send it: the shape name is the x-amzn-ErrorType."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return error_status(self.code)


class ModelViolation(AssertionError):
    """A response that the real service could never send: a bug in the emulator."""


@cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


def operation_model(name: str) -> OperationModel:
    return service_model().operation_model(name)


def error_status(code: str) -> int:
    shape = service_model().shape_for(code)
    return int(shape.metadata["error"]["httpStatusCode"])


def error_codes() -> list[str]:
    model = service_model()
    return sorted(
        {
            shape.name
            for op in OPERATIONS
            for shape in model.operation_model(op).error_shapes
        }
    )


@cache
def compiled_pattern(pattern: str) -> re.Pattern[str]:
    # The model's patterns are Java regexes; \p{ASCII} is the only construct Python's re lacks here.
    return re.compile(pattern.replace(r"\p{ASCII}", r"[\x00-\x7F]"), re.DOTALL)


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    regex: re.Pattern[str]


@cache
def routes() -> tuple[Route, ...]:
    found = []
    for name in OPERATIONS:
        http = operation_model(name).http
        uri = http["requestUri"].split("?")[0]
        regex = re.escape(uri)
        for label in re.findall(r"\{(\w+)\}", uri):
            regex = regex.replace(re.escape("{" + label + "}"), f"(?P<{label}>[^/]*)")
        found.append(Route(name, http["method"], re.compile(f"^{regex}$")))
    return tuple(found)


def match_route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for route in routes():
        hit = route.regex.match(path)
        if hit and route.method == method:
            return route.operation, {k: unquote(v) for k, v in hit.groupdict().items()}
    return None


def parse_request(
    operation: str,
    path_params: Mapping[str, str],
    query: Mapping[str, list[str]],
    body: bytes,
) -> dict[str, Any]:
    """Turn a rest-json HTTP request into the operation's input dict and validate it."""
    op = operation_model(operation)
    shape = op.input_shape
    params: dict[str, Any] = {}
    if shape is None:
        return params
    if body.strip():
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise ServiceError(
                "ValidationException", "Request body is not valid JSON"
            ) from exc
        if not isinstance(decoded, dict):
            raise ServiceError(
                "ValidationException", "Request body must be a JSON object"
            )
    else:
        decoded = {}
    assert isinstance(shape, StructureShape)
    # A member named as the payload is the whole body (SearchImageSets' searchCriteria), not a key in it.
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if name == payload:
            if body.strip():
                params[name] = decoded
        elif location == "uri":
            if wire_name in path_params:
                params[name] = path_params[wire_name]
        elif location == "querystring":
            if wire_name in query:
                params[name] = _from_query(name, member, query[wire_name][0])
        elif location is None and name in decoded:
            params[name] = decoded[name]
    errors = list(validate(shape, params, path=""))
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise ServiceError(
            "ValidationException",
            f"{count} validation {noun} detected: " + "; ".join(errors),
        )
    return params


def _from_query(name: str, member: Shape, raw: str) -> Any:
    if member.type_name == "integer":
        try:
            return int(raw)
        except ValueError as exc:
            raise ServiceError(
                "ValidationException",
                f"Value '{raw}' at '{name}' failed to satisfy constraint: Member must be a number",
            ) from exc
    return raw


def validate(
    shape: Shape, value: Any, path: str, *, inside_sensitive: bool = False
) -> list[str]:
    """Every constraint violation of value against shape, in AWS's wording.

    Nothing inside a member marked `sensitive` is echoed (SearchImageSets' criteria hold patient IDs).
    """
    where = path or "request"
    sensitive = inside_sensitive or bool(shape.metadata.get("sensitive"))
    shown = "Value" if sensitive else f"Value '{_short(value)}'"

    def fail(constraint: str) -> list[str]:
        return [f"{shown} at '{where}' failed to satisfy constraint: {constraint}"]

    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            return fail("Member must be a structure")
        errors: list[str] = []
        present = [k for k in shape.members if value.get(k) is not None]
        # An unknown key counts as a set member: a union names exactly one known member, nothing else.
        set_keys = [k for k, v in value.items() if v is not None]
        if meta.get("union") and (
            len(set_keys) != 1 or set_keys[0] not in shape.members
        ):
            errors += fail(
                f"Member must have exactly one of the following members set: {', '.join(shape.members)}"
            )
        for required in meta.get("required", []):
            if value.get(required) is None:
                errors.append(
                    f"Value null at '{_join(path, required)}' failed to satisfy constraint: Member must not be null"
                )
        for name in present:
            errors += validate(
                shape.members[name],
                value[name],
                _join(path, name),
                inside_sensitive=sensitive,
            )
        return errors
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            return fail("Member must be a list")
        errors = _length(shape, len(value), fail)
        for i, item in enumerate(value, start=1):
            errors += validate(
                shape.member, item, f"{where}.{i}.member", inside_sensitive=sensitive
            )
        return errors
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            return fail("Member must be a map")
        errors = _length(shape, len(value), fail)
        for k, v in value.items():
            errors += validate(shape.key, k, f"{where}.key", inside_sensitive=sensitive)
            errors += validate(
                shape.value, v, f"{where}.{k}", inside_sensitive=sensitive
            )
        return errors
    if kind == "string":
        if not isinstance(value, str):
            return fail("Member must be a string")
        errors = _length(shape, len(value), fail)
        if "enum" in meta and value not in meta["enum"]:
            errors += fail(
                f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]"
            )
        if "pattern" in meta and not compiled_pattern(meta["pattern"]).fullmatch(value):
            errors += fail(
                f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
        return errors
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return fail("Member must be an integer")
        errors = []
        if "min" in meta and value < meta["min"]:
            errors += fail(
                f"Member must have value greater than or equal to {meta['min']}"
            )
        if "max" in meta and value > meta["max"]:
            errors += fail(
                f"Member must have value less than or equal to {meta['max']}"
            )
        return errors
    if kind == "boolean":
        return [] if isinstance(value, bool) else fail("Member must be a boolean")
    if kind == "timestamp":
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        )
        return [] if ok else fail("Member must be a timestamp")
    if kind == "blob":
        return [] if isinstance(value, str) else fail("Member must be base64 text")
    return fail(f"Unsupported shape type {kind}")


def _length(shape: Shape, size: int, fail: Any) -> list[str]:
    meta = shape.metadata
    errors: list[str] = []
    if "min" in meta and size < meta["min"]:
        errors += fail(
            f"Member must have length greater than or equal to {meta['min']}"
        )
    if "max" in meta and size > meta["max"]:
        errors += fail(f"Member must have length less than or equal to {meta['max']}")
    return errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def streaming_payload(operation: str) -> str | None:
    """The output member that is the raw response body (GetImageSetMetadata's blob), if any."""
    shape = operation_model(operation).output_shape
    if shape is None:
        return None
    payload = shape.serialization.get("payload")
    if payload and shape.members[payload].type_name == "blob":
        return str(payload)
    return None


def check_output(operation: str, data: Mapping[str, Any]) -> None:
    """Raise ModelViolation unless data is a response the model allows (and nothing more).

    A streaming blob payload is bytes on the wire, not base64 text: it is checked for being bytes only.
    """
    shape = operation_model(operation).output_shape
    assert isinstance(shape, StructureShape)
    data = dict(data)
    blob = streaming_payload(operation)
    if blob is not None:
        if not isinstance(data.get(blob), bytes):
            raise ModelViolation(f"{operation} response needs bytes in {blob}")
        data[blob] = ""
    errors = validate(shape, data, path="")
    errors += _unknown_members(shape, data, "")
    if errors:
        raise ModelViolation(
            f"{operation} response breaks the service model: " + "; ".join(errors)
        )


def _unknown_members(shape: Shape, value: Any, path: str) -> list[str]:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        errors = [
            f"unknown member '{_join(path, k)}'"
            for k in value
            if k not in shape.members
        ]
        for k, member in shape.members.items():
            if k in value:
                errors += _unknown_members(member, value[k], _join(path, k))
        return errors
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [
            e
            for i, item in enumerate(value)
            for e in _unknown_members(shape.member, item, f"{path}[{i}]")
        ]
    return []


def timestamp(moment: datetime) -> float:
    """rest-json's default timestamp format: epoch seconds."""
    return round(moment.timestamp(), 3)
