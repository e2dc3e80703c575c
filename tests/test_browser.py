"""What a person sees in the MLflow UI after a run, checked in a real browser.

Runs the tiny pipeline, starts the real `mlflow server` on its store (what `make ui`
does), opens the URL the run printed in headless Debian Chromium (installed by
`.ci/run`; nothing is downloaded here) and reads the rendered pages: the run FINISHED,
its datasets and registered model, the metric sections with the val perplexity chart,
the artifacts (plots, samples, vocabulary, model, report) and the decoders' samples
table. Screenshots of each page are saved under outputs/test-screenshots/.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import REPO_ROOT, free_port, run_pipeline, wait_for_http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = os.path.join(REPO_ROOT, "outputs", "test-screenshots")
DECODERS = ("beam", "contrastive", "greedy", "random", "top_k", "top_p")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def browse(url: str, screenshot: str) -> "tuple[str, str]":
    """(visible text, DOM) of `url` once its scripts have run; saves a screenshot of it."""
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--disable-background-networking",  # no calls home
        "--disable-component-update",
        "--virtual-time-budget=25000",  # let the app fetch and render
        "--window-size=1400,6000",  # tall: every chart section renders
    ]
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, screenshot)
    subprocess.run([*flags, f"--screenshot={path}", url], capture_output=True, timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    visible = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", visible)), dom


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(run page URL, server URL, run id) for a finished tiny run served by `mlflow server`."""
    out = tmp_path_factory.mktemp("browser") / "out"
    result = run_pipeline(out)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.search(r"then open:\s+(http://127\.0\.0\.1:5000/\S+)", result.stdout).group(1)
    port = free_port()
    log = out / "mlflow-server.log"
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{out}/mlflow.db"]
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", server, log)
        yield printed.replace("127.0.0.1:5000", f"127.0.0.1:{port}"), base, printed.rsplit("/", 1)[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_run_page_shows_status_datasets_metrics_and_registered_model(ui):
    url, _, _ = ui
    text, _ = browse(url, "run-overview.png")
    assert "Status Finished" in text
    # The train split by name and digest, the eval split folded into "+1".
    assert re.search(r"Datasets tiny_corpus/train\.txt \([0-9a-f]{16}\) train \+1", text)
    assert "minigpt v1" in text  # registered model version
    for metric in ("train/loss", "val/perplexity", "eval/perplexity", "decoder/top_k/tokens_per_s"):
        assert metric in text, metric


def test_metrics_are_grouped_in_sections_and_val_perplexity_has_a_point_per_epoch(ui):
    """The sections, with their chart counts. MLflow orders them by name and draws the
    charts of a section only once it is scrolled into view, which a command-line
    browser cannot do: the val perplexity chart's points are read from the same server."""
    url, base, run_id = ui
    text, _ = browse(f"{url}/model-metrics", "run-model-metrics.png")
    for section, charts in (("train", 5), ("val", 3), ("eval", 2), ("model", 1), ("decoder/greedy", 6)):
        assert re.search(rf"(^| ){re.escape(section)} \({charts}\) Add chart", text), section
    query = f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=val/perplexity"
    history = json.load(urllib.request.urlopen(query))["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2]


def test_the_artifacts_hold_plots_samples_vocabulary_model_and_the_report(ui):
    url, _, _ = ui
    text, _ = browse(f"{url}/artifacts", "run-artifacts.png")
    for name in ("model", "plots", "samples", "vocabulary", "decoder_leaderboard.json", "report.html"):
        assert name in text, name
    samples, _ = browse(f"{url}/artifacts/decoder_samples.json", "run-decoder-samples.png")
    assert "decoder prompt text tokens_per_s" in samples
    for decoder in DECODERS:
        assert f" {decoder} [BOS]" in samples, decoder
    _, report = browse(f"{url}/artifacts/report.html", "run-report.png")
    assert 'class="mlflow-html-iframe"' in report  # the report page, rendered in the viewer
