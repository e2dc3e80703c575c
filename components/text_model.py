"""Where text models registered before 2026-11-30 find their class.

MLflow pickled their `MiniGPTText` by reference, as `components.text_model.MiniGPTText`,
before the class moved to `components.tracking.text_model`; `mlflow.pyfunc.load_model`
on such a version (`python -m pipeline.generate --model models:/minigpt/1`) imports this
name. New code imports `components.tracking.text_model`.
"""

from components.tracking.text_model import MiniGPTText  # noqa: F401
