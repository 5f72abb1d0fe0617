"""Test instrumentation, not part of the examples: record what each ``start()`` reports.

``tests/test_upstream_examples.py`` puts this directory first on ``PYTHONPATH`` so Python imports it
at start-up; every ``DataOnlineGenerator.start()`` then appends its ``RunResult`` as one JSON line to
``$DOGE_UPSTREAM_RESULT``. The test compares those counts with what arrived in Kafka and PostgreSQL,
while the example scripts themselves run unchanged.
"""

from __future__ import annotations

import json
import os

__all__: list[str] = []

_path = os.environ.get("DOGE_UPSTREAM_RESULT")
if _path:
    from doge_dist.model._generator import DataOnlineGenerator

    _start = DataOnlineGenerator.start

    def _recording_start(self, *args, **kwargs):
        result = _start(self, *args, **kwargs)
        with open(_path, "a") as out:
            out.write(json.dumps(result.to_dict()) + "\n")
        return result

    DataOnlineGenerator.start = _recording_start
