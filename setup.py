"""Packages the pipeline wiring and the TFX components.

The pipeline image installs it (Dockerfile), so that Kubeflow/Vertex tasks and Dataflow
workers import the Beam transforms and executors by module path; this checkout's venv
installs it the same way (Makefile).
"""

import os

from setuptools import find_packages, setup


def _requirements(name: str) -> list:
    """The pins of requirements/<name>.in (the constraints file pins their dependencies)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements", name + ".in")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setup(
    name="minigpt-pipeline",
    version="0.1.0",
    description="Beam + TFX + MLflow pipeline that trains a mini-GPT from scratch.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*"]),
    package_data={"pipeline": ["embedded_corpus/*.txt", "embedded_corpus/*.md"]},
    include_package_data=True,
    # The pipeline's own dependencies are installed from requirements/ with the
    # constraints file (Makefile, Dockerfile); the extra is what compiling and
    # submitting to Kubeflow / Vertex adds.
    extras_require={"cloud": _requirements("cloud")},
    # MLflow's auth plugins, chosen per task by $MLFLOW_TRACKING_AUTH (components/tracking/credentials.py).
    entry_points={
        "mlflow.request_auth_provider": [
            "minigpt-secret-manager=components.tracking.request_auth:SecretManagerAuthProvider",
            "minigpt-google-id-token=components.tracking.request_auth:GoogleIdTokenAuthProvider",
        ]
    },
)
