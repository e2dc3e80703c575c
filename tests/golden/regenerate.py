"""Rewrites the golden Vertex and Kubeflow specs after an intended change: `make golden`.

Review the diff: it is what Vertex AI / Kubeflow Pipelines will be given.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.golden.spec import GOLDEN_PATHS, golden  # noqa: E402

if __name__ == "__main__":
    for orchestrator, path in GOLDEN_PATHS.items():
        with open(path, "w", encoding="utf-8") as f:
            json.dump(golden(orchestrator), f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"wrote {path}")
