"""What ships: the package, the pipeline image's Dockerfile, and which copy of our code a worker imports."""

import os
import re
import shutil
import subprocess
import sys
import tarfile

from apache_beam.runners.portability.stager import Stager

from pipeline import image
from pipeline.beam_args import LOCAL_SETUP_FILE
from tests.conftest import REPO_ROOT

PACKAGES = ("components", "pipeline")


def _our_modules():
    modules = []
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(REPO_ROOT, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(folder, name), REPO_ROOT)[: -len(".py")]
                    modules.append(relative.replace(os.sep, ".").removesuffix(".__init__"))
    return sorted(modules)


def test_the_package_installs_every_module_and_the_corpus_away_from_the_checkout(tmp_path):
    # An sdist built by Beam's own staging code (what `python setup.py sdist` gives)...
    sdist = Stager._build_setup_package(LOCAL_SETUP_FILE, str(tmp_path))
    with tarfile.open(sdist) as tar:
        assert any(name.endswith("requirements/cloud.in") for name in tar.getnames())
    # ...installed offline, away from this checkout: every module and the corpus are in it.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), sdist],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    result = _import_everything(cwd=tmp_path, first_on_path=str(site), expected_root=str(site))
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_dataflow_worker_imports_the_images_copy_of_our_code(tmp_path):
    """Beam's SDK harness boot runs `python -m apache_beam.runners.worker.sdk_worker_main`
    in the container's WORKDIR (sdks/python/container/boot.go), so the working directory
    comes first on sys.path: the image's /pipeline, whatever else is installed."""
    with open(os.path.join(REPO_ROOT, "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    assert re.findall(r"^WORKDIR (\S+)$", dockerfile, re.MULTILINE) == [image.ROOT]
    assert re.search(rf"^COPY \. {re.escape(image.ROOT)}$", dockerfile, re.MULTILINE)
    # The image's layout: this tree as `COPY .` leaves it (less .dockerignore).
    with open(os.path.join(REPO_ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignored = [line.strip().removeprefix("**/") for line in f if line.strip()]
    workdir = tmp_path / image.ROOT.strip("/")
    shutil.copytree(REPO_ROOT, workdir, ignore=shutil.ignore_patterns(*ignored))
    # Another copy of the package where an installed one would be (a staged sdist, say).
    other = tmp_path / "other-site"
    shutil.copytree(workdir / "components", other / "components")
    result = _import_everything(cwd=workdir, first_on_path=None, expected_root=str(workdir), pythonpath=str(other))
    assert result.returncode == 0, result.stderr[-3000:]


def _import_everything(cwd, first_on_path, expected_root, pythonpath=None):
    """Imports each of our modules in a fresh interpreter started in `cwd` (which Python
    puts first on sys.path, as `python -m` does), checking each came from `expected_root`."""
    modules = _our_modules()
    assert "components.tokenize.executor" in modules and "pipeline.run" in modules
    script = (
        "import importlib, os, sys\n"
        f"sys.path.insert(0, {first_on_path!r}) if {first_on_path!r} else None\n"
        "from pipeline.corpus import EMBEDDED_CORPUS_DIR\n"
        "assert os.path.getsize(os.path.join(EMBEDDED_CORPUS_DIR, 'train.txt')) > 0\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({expected_root!r}), (name, module.__file__)\n"
    )
    env = _without_repo_on_path()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, env=env)


def _without_repo_on_path():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_the_dockerfile_installs_exactly_the_constraints_and_our_package():
    with open(os.path.join(REPO_ROOT, "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    # The Beam SDK image of the pinned Beam and Python: Dataflow can run it as the worker
    # image, and Kubeflow/Vertex tasks run it with TFX's entrypoint.
    with open(os.path.join(REPO_ROOT, "requirements", "constraints.txt"), encoding="utf-8") as f:
        beam = re.search(r"^apache-beam==(\S+)$", f.read(), re.MULTILINE).group(1)
    assert re.search(rf"^FROM apache/beam_python3\.10_sdk:{re.escape(beam)}\b", dockerfile, re.MULTILINE)
    commands = dockerfile.replace("\\\n", " ")  # continuation lines joined
    installs = [" ".join(line.split()) for line in re.findall(r"pip install ([^\n]*)", commands)]
    assert installs == [
        "--no-cache-dir -r requirements/base.in -r requirements/cloud.in -c requirements/constraints.txt",
        "--no-cache-dir \"jax[cuda12]==$(sed -n 's/^jax==//p' requirements/constraints.txt)\" "
        "-c requirements/constraints.txt -c requirements/gpu-constraints.txt",
        "--no-cache-dir --no-deps -e /pipeline && pip check",
    ]
    assert re.search(r"^COPY \. /pipeline$", dockerfile, re.MULTILINE)
    assert 'RUN test -z "${TF_USE_LEGACY_KERAS:-}"' in dockerfile
    assert not re.search(r"^ENV\s+TF_USE_LEGACY_KERAS", dockerfile, re.MULTILINE)
    # The jax pin the CUDA build reads is there to read, and its CUDA plugin and every
    # NVIDIA library jax[cuda12] pulls in are pinned to one version each.
    with open(os.path.join(REPO_ROOT, "requirements", "constraints.txt"), encoding="utf-8") as f:
        jax = re.search(r"^jax==(\S+)$", f.read(), re.M).group(1)
    with open(os.path.join(REPO_ROOT, "requirements", "gpu-constraints.txt"), encoding="utf-8") as f:
        gpu = dict(re.findall(r"^([a-z0-9-]+)==(\S+)$", f.read(), re.M))
    assert gpu["jax-cuda12-plugin"] == gpu["jax-cuda12-pjrt"] == jax
    libraries = ("cublas", "cuda-cupti", "cuda-nvcc", "cuda-runtime", "cudnn", "cufft", "cusolver", "cusparse", "nccl")
    assert {f"nvidia-{name}-cu12" for name in (*libraries, "nvjitlink")} <= set(gpu)


def test_the_cloud_extra_resolves_beside_the_pinned_set():
    """kfp 2.5.0 / kfp-pipeline-spec 0.2.2 with TFX's protobuf 3.20 (kubeflow/pipelines 10499)."""
    import google.cloud.aiplatform
    import google.protobuf
    import kfp
    from kfp.pipeline_spec import pipeline_spec_pb2

    assert kfp.__version__ == "2.5.0" and google.protobuf.__version__ == "3.20.3"
    assert pipeline_spec_pb2.PipelineJob and google.cloud.aiplatform.PipelineJob
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
