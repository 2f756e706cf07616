"""The SaaS front door: an HTTP API over the job store (FastAPI).

`create_app(settings)` builds the app; `darkroom api` serves it with uvicorn. Routes:
`POST /v1/jobs` (JSON or multipart upload; `?wait=preview` / `Prefer: wait=N` for an
inline result), `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/events` (server-sent events),
`DELETE /v1/jobs/{id}`, `POST /v1/batches`, `GET /v1/batches/{id}`, `POST /edit`
(free-text instructions), `GET /v1/outputs/{key}` (local results), `GET /healthz`,
and the OpenAPI document at `/openapi.json`.
"""

from producer.api.app import Service, create_app
from producer.api.context import ApiOptions

__all__ = ["ApiOptions", "Service", "create_app"]
