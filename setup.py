"""Packages the pipeline wiring and the TFX components.

Dataflow workers and Kubeflow containers install this package (`--setup_file`) so that
Beam transforms and executors can be imported by module path on every worker.
"""

from setuptools import find_packages, setup

setup(
    name="minigpt-pipeline",
    version="0.1.0",
    description="Beam + TFX + MLflow pipeline that trains a mini-GPT from scratch.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*"]),
    package_data={"pipeline": ["embedded_corpus/*.txt", "embedded_corpus/*.md"]},
    include_package_data=True,
)
