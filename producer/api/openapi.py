"""The OpenAPI document: FastAPI's, plus the two bodies `POST /v1/jobs` parses by hand.

The route reads its body itself (JSON or multipart), so FastAPI cannot see its
schema; `JOB_REQUEST_BODY` describes both, and `document` adds the models it refers
to under `components/schemas`, so clients and schemathesis see the real contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from producer.api.models import (
    MAX_EXTRA_UPLOADS,
    BatchRequest,
    EditRequest,
    JobOptions,
    JobRequest,
)

REF = "#/components/schemas/{model}"

JOB_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": REF.format(model="JobRequest")}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "job"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "job": {
                        "type": "string",
                        "description": "JobOptions as JSON (a JobRequest without `input`)",
                    },
                    "extra_image": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "maxItems": MAX_EXTRA_UPLOADS,
                        "description": "further images, in order, for ops that read them "
                        "(the job's extra inputs: multi_identity's other people, qwen_edit's "
                        "references)",
                    },
                },
            },
        },
    },
}


def json_body(model: str) -> dict[str, Any]:
    """The `requestBody` of a route that reads its JSON body itself (after the key)."""
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def _schemas() -> dict[str, Any]:
    """JobRequest and JobOptions, with the models they use, as components."""
    found: dict[str, Any] = {}
    for model in (JobRequest, JobOptions, BatchRequest, EditRequest):
        schema = model.model_json_schema(ref_template=REF)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in _schemas().items():
            schemas.setdefault(name, schema)
        app.openapi_schema = spec
    return app.openapi_schema
