"""Hosted edits: Gemini 2.5 Flash Image ("Nano Banana") through Google's `google-genai`.

`GeminiImageEditor` is the client call and its error mapping; it knows nothing of
Celery, Redis or spend. A hosted worker (`workers.hosted`) wraps it with the spend
cap and serves `gemini_edit` and the spilled GPU edits with it, so this family's op
table is empty: no other worker can run a hosted op.
"""

from pipelines.base import OpTable
from pipelines.hosted.gemini import GeminiImageEditor, HostedEdit

OPS: OpTable = {}

__all__ = ["OPS", "GeminiImageEditor", "HostedEdit"]
