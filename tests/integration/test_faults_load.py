"""The load bench (`python -m bench.load`) in small: a real `darkroom api`, a preview and a
final worker with a final backlog, and locust offering previews and final submissions.
It proves the bench still runs end to end, and that previews are answered through the
API while the final lane is busy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.harness import percentile
from bench.load import Load, measure

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Never imported here: locust monkey-patches the process with gevent.
LOCUST = Path(sys.executable).parent / "locust"


@pytest.mark.skipif(not LOCUST.exists(), reason="locust is not installed")
def test_previews_are_answered_through_the_api_while_finals_pile_up() -> None:
    load = Load(
        duration_s=8, preview_users=2, preview_rate=1.0, final_users=1, final_rate=1.0, backlog=60
    )
    result = measure(load)
    assert result.failed("preview") == [] and result.failed("final") == []
    assert len(result.previews) >= 8, "two users at 1 req/s for 8 s"
    # Each preview came back rendered (the locustfile checks state == succeeded) well
    # under the time the final backlog takes (~6 s): previews never queued behind it.
    assert percentile(result.previews, 95) < 2000, sorted(result.previews)[-5:]
    assert len(result.finals) >= 4 and result.server.finals_submitted == len(result.finals)
    assert result.server.finals_done > 0
