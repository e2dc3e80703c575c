"""What a person sees in the MLflow UI after a run, checked in a real browser.

Runs the tiny pipeline, starts the real `mlflow server` on its store (what `make ui`
does), opens the URL the run printed in headless Debian Chromium (installed by
`.ci/run`; nothing is downloaded here) and reads the rendered pages: the run FINISHED
in the model-training view, its datasets and registered model, the curves first with
the val perplexity chart drawn one point per epoch, the artifacts (plots, samples,
vocabulary, model, report) and the decoders' samples table. Screenshots of each page
are saved under outputs/test-screenshots/.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.chromium import Chromium
from tests.conftest import REPO_ROOT, free_port, run_pipeline, wait_for_http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = os.path.join(REPO_ROOT, "outputs", "test-screenshots")
DECODERS = ("beam", "contrastive", "greedy", "random", "top_k", "top_p")
# Every chart card on a metrics page: its section, its title and the data Plotly drew.
CHARTS_JS = """
Array.from(document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')).map(card => {
  let section = card;
  while (section && !/^[^\\n]+\\n\\(\\d+\\)/.test(section.innerText)) section = section.parentElement;
  const plot = card.querySelector('.js-plotly-plot');
  const trace = plot && plot.data && plot.data[0];
  return {section: section ? section.innerText.split('\\n')[0] : null, title: card.innerText.split('\\n')[0],
          x: trace ? Array.from(trace.x) : null, y: trace ? Array.from(trace.y) : null};
})
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def tab(url: str, name: str) -> str:
    """The run page URL `url` (with its query) opened on tab `name`."""
    path, _, query = url.partition("?")
    return f"{path}/{name}?{query}"


@pytest.fixture(scope="module")
def browser():
    with Chromium(CHROMIUM) as chromium:
        yield chromium


def shoot(browser: Chromium, name: str) -> None:
    browser.screenshot(os.path.join(SCREENSHOTS, name))


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
        run_id = re.search(r"/runs/([0-9a-f]+)", printed).group(1)
        yield printed.replace("127.0.0.1:5000", f"127.0.0.1:{port}"), base, run_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_run_page_shows_status_datasets_metrics_and_registered_model(ui, browser):
    url, _, _ = ui
    browser.open(url, "/Registered models\\s+minigpt\\s+v1/.test(document.body.innerText)")
    shoot(browser, "run-overview.png")
    text = browser.text()
    assert "Model training" in text and "Evaluation runs" not in text  # the training view, not GenAI's
    assert "Status Finished" in text
    # The train split by name and digest, the eval and test splits folded into "+2" (the UI capitalises).
    assert re.search(r"Datasets tiny_corpus/train\.txt \([0-9a-f]{16}\) Train \+2", text), text
    for metric in ("train/loss", "val/perplexity", "test.perplexity", "eval.perplexity", "decoder.top_k.tokens_per_s"):
        assert metric in text, metric


def test_the_curves_come_first_and_val_perplexity_has_a_point_per_epoch(ui, browser):
    """The sections in the order shown, with their chart counts: the per-epoch curves,
    then every one-value result in "Model metrics" (6 decoders x 6 measures, test and
    eval perplexity and tokens, parameters, kept epoch and its val perplexity; the 15 data
    checks of three splits; the blessing's candidate perplexity and verdict); and the val
    perplexity curve as drawn: one point per epoch, at the logged values."""
    url, base, run_id = ui
    browser.open(tab(url, "model-metrics"), "document.querySelectorAll('.js-plotly-plot').length >= 6")
    shoot(browser, "run-model-metrics.png")
    sections = re.findall(r"(?:^| )([\w/. ]+?) \((\d+)\) Add chart", browser.text())
    assert sections[:3] == [("train", "4"), ("val", "2"), ("Model metrics", str(6 * 6 + 7 + 15 + 2))], sections
    charts = browser.evaluate(CHARTS_JS)
    assert [(c["section"], c["title"]) for c in charts[:6]] == [
        ("train", "loss"),
        ("train", "lr"),
        ("train", "perplexity"),
        ("train", "seconds_per_epoch"),
        ("val", "loss"),
        ("val", "perplexity"),
    ]
    query = f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=val/perplexity"
    logged = sorted((m["step"], m["value"]) for m in json.load(urllib.request.urlopen(query))["metrics"])
    drawn = charts[5]
    assert drawn["x"] == [1, 2]  # the tiny config's two epochs
    assert drawn["y"] == pytest.approx([value for _, value in logged])


def test_the_artifacts_hold_plots_samples_vocabulary_model_and_the_report(ui, browser):
    url, _, _ = ui
    browser.open(tab(url, "artifacts"), "document.body.innerText.includes('report.html')")
    shoot(browser, "run-artifacts.png")
    text = browser.text()
    for name in ("model", "plots", "samples", "vocabulary", "decoder_leaderboard.json", "report.html"):
        assert name in text, name
    browser.open(tab(url, "artifacts/decoder_samples.json"), "document.body.innerText.includes('tokens_per_s')")
    shoot(browser, "run-decoder-samples.png")
    samples = browser.text()
    for decoder in DECODERS:
        assert f" {decoder} [BOS]" in samples, decoder
    browser.open(tab(url, "artifacts/report.html"), "document.querySelector('iframe.mlflow-html-iframe')")
    shoot(browser, "run-report.png")  # the report page, rendered in the artifact viewer
