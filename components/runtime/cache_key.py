"""The parameter that puts a component's own code in its TFX cache key.

TFX keys a cached execution on the component's inputs and parameters, not on the Python
its executor runs, so without this a fix to how a component computes its output would
be served from the cache as the old output. The pipeline (`pipeline.dag`) passes each
component the digest of its executor's import closure (`pipeline.code_digest`); no
executor reads it.
"""

from tfx.types.component_spec import ExecutionParameter

CODE_DIGEST_KEY = "code_digest"
# Optional: a component built without one (a test, a notebook) runs the same.
CODE_DIGEST_PARAMETER = ExecutionParameter(type=str, optional=True)
