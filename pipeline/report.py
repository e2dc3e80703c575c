"""The run report: one self-contained HTML page that tells a pipeline run's story.

Written by `run.py` after a local run, to `<output_dir>/report.html` and to the MLflow
run as `report.html` (the MLflow artifact viewer renders HTML). Everything in it is
read back from the run's records, never recomputed: the component states and wall
times from ML Metadata, and the data, model, curves, perplexity, leaderboard and
samples from the MLflow run. The plots are embedded (base64 PNG), so the page needs
nothing beside it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from typing import Iterable, List, Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from tfx.dsl.io import fileio

from components.data.artifact_types import DataChecks
from components.tracking.mlflow_runs import PipelineRun, artifact_paths
from pipeline.run_summary import RunSummary, blessing_line, perplexities

REPORT_FILE = "report.html"
PLOTS = (
    ("plots/line_lengths.png", "Line lengths of the corpus, with the training filter's cut"),
    ("plots/training_curves.png", "Loss and perplexity per epoch"),
    ("plots/decoder_leaderboard.png", "Decoder leaderboard"),
)
PROFILE_COLUMNS = ("lines_read", "lines_kept", "lines_too_short", "sequences", "tokens", "unk_share", "truncated_share")
LEADERBOARD_COLUMNS = ("decoder", "distinct_2", "repeated_4gram_rate", "mean_log_likelihood", "tokens_per_s")
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}"
    ".sample{font-family:monospace;white-space:pre-wrap;background:#f8f8f8;padding:6px;margin:4px 0}"
)


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            value = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _embedded_plots(client: MlflowClient, run_id: str, logged: set, folder: str) -> str:
    parts = []
    for path, title in PLOTS:
        if path in logged:
            with open(client.download_artifacts(run_id, path, folder), "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            parts.append(f"<h3>{html.escape(title)}</h3><img alt='{path}' src='data:image/png;base64,{data}'>")
    return "".join(parts)


def _samples(client: MlflowClient, run_id: str, logged: set, folder: str, decoders: Iterable[str]) -> str:
    parts = []
    for name in decoders:
        path = f"samples/{name}.txt"
        if path in logged:
            with open(client.download_artifacts(run_id, path, folder), encoding="utf-8") as f:
                texts = f.read().strip().split("\n\n")
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts += [f"<div class='sample'>{html.escape(text)}</div>" for text in texts]
    return "".join(parts)


def _epochs(client: MlflowClient, run_id: str) -> List[List]:
    names = ("train/loss", "val/loss", "train/perplexity", "val/perplexity", "train/seconds_per_epoch")
    history = {name: dict(points) for name, points in PipelineRun(client, run_id).metric_history(names).items()}
    steps = sorted(set().union(*(h.keys() for h in history.values())))
    return [[step, *(history[name].get(step, "") for name in names)] for step in steps]


def build_report(summary: RunSummary, run: Run, client: MlflowClient, folder: str) -> str:
    """The HTML page for one pipeline run whose results live in MLflow run `run`
    (artifacts are downloaded to `folder`)."""
    run_id, metrics, params = run.info.run_id, run.data.metrics, run.data.params
    logged = set(artifact_paths(client, run_id))
    evaluation = summary.evaluation or {}
    leaderboard = evaluation.get("leaderboard", [])
    sections = [
        f"<h1>minigpt run {html.escape(summary.pipeline_run_id)}</h1>",
        f"<p>MLflow run <code>{html.escape(run_id)}</code> ({html.escape(run.info.status)}), "
        f"experiment {html.escape(run.info.experiment_id)}.</p>",
        "<h2>Components</h2>",
        _table(
            ["component", "state", "seconds"],
            [(name, state, round(summary.seconds.get(name, 0.0), 1)) for name, state in summary.states.items()],
        ),
        "<h2>Data</h2>",
    ]
    rows = []
    for dataset_input in run.inputs.dataset_inputs:
        dataset, split = dataset_input.dataset, dataset_input.tags[0].value if dataset_input.tags else "?"
        profile = json.loads(dataset.profile or "{}")
        source = json.loads(dataset.source).get("uri", dataset.source)
        rows.append([split, source, dataset.digest, *(profile.get(c, "") for c in PROFILE_COLUMNS)])
    sections.append(_table(["split", "source", "sha256 (16)", *PROFILE_COLUMNS], rows))
    sections += _data_checks(summary)
    sections += [
        "<h2>Model</h2>",
        _table(
            ["vocabulary (learned)", "parameters", "backend", "precision", "epochs", "kept epoch"],
            [
                [
                    params.get("model.vocabulary_size_learned", ""),
                    int(metrics.get("model.num_parameters", 0)),
                    params.get("train.backend_resolved", ""),
                    params.get("train.precision_resolved", ""),
                    params.get("train.epochs", ""),
                    int(metrics["train.best_epoch"]) if "train.best_epoch" in metrics else "",
                ]
            ],
        ),
        "<h2>Training</h2>",
        _table(
            ["epoch", "train loss", "val loss", "train perplexity", "val perplexity", "seconds"],
            _epochs(client, run_id),
        ),
        "<h2>Evaluation</h2>",
        _table(
            ["split", "token-weighted perplexity", "tokens", "what it is"],
            [[row.split, f"{row.perplexity:.2f}", row.tokens, row.meaning] for row in perplexities(evaluation)],
        ),
        *_blessing(evaluation, summary),
        _table(LEADERBOARD_COLUMNS, [[r.get(c, "") for c in LEADERBOARD_COLUMNS] for r in leaderboard]),
        _embedded_plots(client, run_id, logged, folder),
        "<h2>Samples</h2>",
        _samples(client, run_id, logged, folder, evaluation.get("samples", {})),
    ]
    title = f"minigpt run {html.escape(summary.pipeline_run_id)}"
    head = f"<meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>" + "\n".join(sections) + "</body></html>"


def _data_checks(summary: RunSummary) -> List[str]:
    """DataCheck's table (every check, its value, threshold and verdict), when it ran."""
    folder = summary.outputs.get(DataChecks.TYPE_NAME)
    path = folder and os.path.join(folder, DataChecks.FILE_NAME)
    if not path or not fileio.exists(path):
        return []
    with fileio.open(path) as f:
        found = json.loads(f.read())["checks"]
    verdicts = {True: "passed", False: "FAILED"}
    rows = [[c["name"], f"{c['value']:.4g}", f"{c['threshold']:.4g}", verdicts[c["passed"]]] for c in found]
    return ["<h3>Data checks</h3>", _table(["check", "value", "threshold", ""], rows)]


def _blessing(evaluation: dict, summary: RunSummary) -> List[str]:
    """The blessing decision (candidate vs champion) as a line, when the run made one."""
    line = blessing_line(evaluation, summary.pushed)
    return [f"<p><b>Model:</b> {html.escape(line)}</p>"] if line else []


def write_report(summary: RunSummary, tracking_uri: str, output_dir: str) -> str:
    """Writes the report beside the run's outputs and logs it to its MLflow run; returns the path."""
    client = MlflowClient(tracking_uri)
    run = client.get_run(summary.evaluation["mlflow_run_id"])
    path = os.path.abspath(os.path.join(output_dir, REPORT_FILE))
    with tempfile.TemporaryDirectory() as folder:
        page = build_report(summary, run, client, folder)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    client.log_artifact(run.info.run_id, path)
    return path
