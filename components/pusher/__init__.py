"""Pusher: TFX's, plus MLflow's `champion` alias for the model it pushed."""
