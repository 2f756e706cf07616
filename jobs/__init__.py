"""The job contract: schema, op catalogue, tiers, lanes, queues, states and errors.

Imports nothing else of darkroom, and nothing heavy: the producer, the CLI and the
API validate jobs with it without loading torch.
"""

from jobs.errors import DarkroomError, JobError, SchemaError
from jobs.schema import SCHEMA_VERSION, Job, OutputSpec, Recipe, Step
from jobs.states import ErrorCode, JobState
from jobs.tiers import DEFAULT_TIERS, Lane, Tier, queue_name, route

__all__ = [
    "DEFAULT_TIERS",
    "SCHEMA_VERSION",
    "DarkroomError",
    "ErrorCode",
    "Job",
    "JobError",
    "JobState",
    "Lane",
    "OutputSpec",
    "Recipe",
    "SchemaError",
    "Step",
    "Tier",
    "queue_name",
    "route",
]
