"""The lines printed at the end of a local run: what ran, the results, where to look."""

from __future__ import annotations

import os
import sys

from pipeline.config import PipelineConfig
from pipeline.run_summary import RunSummary, blessing_line, perplexities

# MLflow 3.17's UI opens in its GenAI view unless a link asks for the training one.
UI_VIEW = "?workflowType=machine_learning"


def print_summary(cfg: PipelineConfig, summary: RunSummary) -> None:
    """Prints the run's components, results, report and how to browse them in MLflow."""
    evaluation = summary.evaluation or {}
    tracking_uri = cfg.resolved_tracking_uri()
    lines = [
        "",
        "=" * 72,
        f"Pipeline run {summary.pipeline_run_id}: "
        + ", ".join(f"{name} {state}" for name, state in summary.states.items()),
        f"Artifacts:        {cfg.resolved_pipeline_root}",
        f"Trained model:    {summary.outputs.get('Model', '?')}",
        f"Evaluation:       {summary.outputs.get('ModelEvaluation', '?')}",
        *(
            f"{row.split.capitalize() + ' perplexity:':<18}{row.perplexity:.2f} "
            f"(token-weighted, {row.tokens} tokens; {row.meaning})"
            for row in perplexities(evaluation)
        ),
        f"MLflow run:       {evaluation.get('mlflow_run_id', '?')}",
    ]
    decision = blessing_line(evaluation, summary.pushed)
    if decision:
        lines.insert(-1, f"Model:            {decision}")
    if all(state == "CACHED" for state in summary.states.values()):
        lines.append("                  (every component was cached: this is the run that produced the results)")
    for name, text in evaluation.get("samples", {}).items():
        lines.append(f"  {name:>11}: {text[:100]}{'...' if len(text) > 100 else ''}")
    # The mlflow beside this interpreter (the project's venv), so the command works from any directory.
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    if "mlflow_run_id" in evaluation:
        from pipeline.report import write_report

        lines.append(f"Run report:       {write_report(summary, tracking_uri, cfg.output_dir)}")
    lines.append(f"Browse MLflow:    {mlflow_cli} ui --backend-store-uri {tracking_uri} --port 5000")
    if "mlflow_run_id" in evaluation:
        from mlflow.tracking import MlflowClient

        run_id = evaluation["mlflow_run_id"]
        experiment_id = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
        lines.append(f"  then open:      http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}{UI_VIEW}")
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)
