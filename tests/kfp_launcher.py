"""A test-only stand-in for the KFP v2 launcher: runs a compiled Vertex PipelineJob here.

Each task of the root DAG runs, in dependency order, as its container would: the
executor's own `command` and `args`, with the placeholders substituted from an
`ExecutorInput` built the way the launcher builds it (the task's constants as
`inputs.parameters`, the producers' output artifacts as `inputs.artifacts`, a URI per
output artifact and an `outputFile` under the pipeline root), and with the metadata an
executor wrote into its `ExecutorOutput` merged into its output artifacts before they
are handed downstream (KFP's `mergeRuntimeArtifacts`). A `preCacheCheck` hook runs
first with the same executor input, as Vertex runs it; the executor then reads what it
wrote from `outputFile`. `tests/test_compiled_spec.py` says what is not reproduced.

The image is stood in for by this checkout: the interpreter running this module is the
image's `python`, the checkout its WORKDIR (`pipeline.image.ROOT`), and paths under that
root in the arguments and parameters are rewritten onto the checkout.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import uuid
from typing import Any, Dict, List, Mapping, Optional

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import image

# Run-level placeholders Vertex substitutes in container arguments.
JOB_UUID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
JOB_NAME_PLACEHOLDER = "{{$.pipeline_job_name}}"
EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"


@dataclasses.dataclass
class TaskRun:
    """One task's run: what it was given, how it ended, what it wrote."""

    name: str
    returncode: int
    executor_input: Dict[str, Any]
    executor_output: Dict[str, Any]
    log: str


def task_order(spec: Mapping[str, Any]) -> List[str]:
    """The root DAG's tasks, each after every task it depends on (`dependentTasks` and
    the producers of its inputs); ties in name order, so a run is reproducible."""
    tasks = spec["root"]["dag"]["tasks"]
    upstream = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    for name, task in tasks.items():
        for kind, key in (("artifacts", "taskOutputArtifact"), ("parameters", "taskOutputParameter")):
            for value in task.get("inputs", {}).get(kind, {}).values():
                if key in value:
                    upstream[name].add(value[key]["producerTask"])
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(name for name in tasks if name not in order and upstream[name] <= set(order))
        if not ready:
            raise ValueError(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


class Launcher:
    """Runs a PipelineJob's tasks with `python` = this interpreter, in `checkout`.

    `pipeline_root` is a local folder standing in for the job's gcsOutputDirectory;
    `env` is the environment around the containers' own `env` entries.
    """

    def __init__(self, job: Mapping[str, Any], pipeline_root: str, checkout: str, env: Mapping[str, str]):
        self.spec = job["pipelineSpec"]
        if self.spec["schemaVersion"] != "2.0.0":
            raise ValueError(f"only Vertex's schema 2.0.0 is reproduced, got {self.spec['schemaVersion']}")
        self.job_name = job.get("displayName", self.spec["pipelineInfo"]["name"])
        self.job_uuid = uuid.uuid4().hex
        self.job_dir = os.path.join(pipeline_root, self.job_uuid)
        self.checkout = checkout
        self.env = dict(env)
        # Each finished task's output artifacts.
        self.outputs: Dict[str, Dict[str, pipeline_spec_pb2.RuntimeArtifact]] = {}

    def run(self, stop_on_failure: bool = True) -> Dict[str, TaskRun]:
        """Every task in dependency order; stops after the first that fails, by default."""
        runs: Dict[str, TaskRun] = {}
        for name in task_order(self.spec):
            runs[name] = self.run_task(name)
            if runs[name].returncode and stop_on_failure:
                break
        return runs

    def run_task(self, name: str) -> TaskRun:
        """Builds the task's executor input, runs its preCacheCheck (if any) and its
        executor, and keeps its merged output artifacts for the tasks downstream."""
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor["container"]
        task_dir = os.path.join(self.job_dir, f"{name}_{uuid.uuid4().hex[:12]}")
        executor_input = self._executor_input(task, component, task_dir)
        env = {**self.env, **{item["name"]: item["value"] for item in container.get("env", [])}}
        log = ""
        returncode = 0
        steps = [container.get("lifecycle", {}).get("preCacheCheck"), container]
        for step in filter(None, steps):
            argv = self._command_line(step, executor_input)
            done = subprocess.run(argv, cwd=self.checkout, env=env, capture_output=True, text=True)
            log += done.stdout + done.stderr
            returncode = done.returncode
            if returncode:
                break
        executor_output = pipeline_spec_pb2.ExecutorOutput()
        if not returncode and os.path.exists(executor_input.outputs.output_file):
            with open(executor_input.outputs.output_file, encoding="utf-8") as f:
                json_format.Parse(f.read(), executor_output, ignore_unknown_fields=True)
        produced = {}
        for key, artifacts in executor_input.outputs.artifacts.items():
            artifact = pipeline_spec_pb2.RuntimeArtifact()
            artifact.CopyFrom(artifacts.artifacts[0])
            if executor_output.artifacts[key].artifacts:
                _merge(executor_output.artifacts[key].artifacts[0], artifact)
            produced[key] = artifact
        self.outputs[name] = produced
        return TaskRun(
            name, returncode, json_format.MessageToDict(executor_input), json_format.MessageToDict(executor_output), log
        )

    def _executor_input(
        self, task: Mapping[str, Any], component: Mapping[str, Any], task_dir: str
    ) -> pipeline_spec_pb2.ExecutorInput:
        executor_input = pipeline_spec_pb2.ExecutorInput()
        inputs = executor_input.inputs
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            value = parameter["runtimeValue"]["constantValue"]
            if "stringValue" in value:
                value = {"stringValue": self._in_checkout(value["stringValue"])}
            json_format.ParseDict(value, inputs.parameters[key])
        for key, artifact in task.get("inputs", {}).get("artifacts", {}).items():
            source = artifact["taskOutputArtifact"]
            produced = self.outputs[source["producerTask"]][source["outputArtifactKey"]]
            inputs.artifacts[key].artifacts.add().CopyFrom(produced)
        outputs = executor_input.outputs
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            artifact = outputs.artifacts[key].artifacts.add(name=f"{self.job_uuid}/{os.path.basename(task_dir)}/{key}")
            artifact.uri = os.path.join(task_dir, key)
            json_format.ParseDict(definition["artifactType"], artifact.type)
            # A bucket has no folders to create; a local folder stands in for one.
            os.makedirs(artifact.uri, exist_ok=True)
        outputs.output_file = os.path.join(task_dir, "executor_output.json")
        return executor_input

    def _command_line(self, step: Mapping[str, Any], executor_input: pipeline_spec_pb2.ExecutorInput) -> List[str]:
        """The step's command and arguments with the launcher's placeholders filled in."""
        placeholders = _placeholders(executor_input)
        placeholders.update({JOB_UUID_PLACEHOLDER: self.job_uuid, JOB_NAME_PLACEHOLDER: self.job_name})
        argv = []
        for item in [*step["command"], *step.get("args", [])]:
            for placeholder, value in placeholders.items():
                item = item.replace(placeholder, value)
            if "{{$" in item:
                raise ValueError(f"a placeholder this launcher does not know: {item[:200]}")
            argv.append(self._in_checkout(item))
        if argv[0] != "python":
            raise ValueError(f"the image's entrypoint is not python: {argv[0]}")
        return [sys.executable, *argv[1:]]

    def _in_checkout(self, value: str) -> str:
        """A path in the image (alone or as a flag's value) as the same path in the checkout."""
        return re.sub(rf"(^|=){re.escape(image.ROOT)}(?=/|$)", lambda m: m.group(1) + self.checkout, value)


def _placeholders(executor_input: pipeline_spec_pb2.ExecutorInput) -> Dict[str, str]:
    """What the launcher substitutes for the executor-input placeholders (its
    `getPlaceholders`): the whole input as JSON, artifact URIs, parameter values and
    output parameter files. A local URI is its own local path (`.path`)."""
    found = {EXECUTOR_INPUT_PLACEHOLDER: json_format.MessageToJson(executor_input, indent=None)}
    for direction, artifacts in (
        ("inputs", executor_input.inputs.artifacts),
        ("outputs", executor_input.outputs.artifacts),
    ):
        for key, listed in artifacts.items():
            for field in ("uri", "path") if listed.artifacts else ():
                found[f"{{{{$.{direction}.artifacts['{key}'].{field}}}}}"] = listed.artifacts[0].uri
    for key, value in executor_input.inputs.parameters.items():
        found[f"{{{{$.inputs.parameters['{key}']}}}}"] = str(getattr(value, value.WhichOneof("value")))
    for key, parameter in executor_input.outputs.parameters.items():
        found[f"{{{{$.outputs.parameters['{key}'].output_file}}}}"] = parameter.output_file
    return found


def _merge(source: pipeline_spec_pb2.RuntimeArtifact, target: pipeline_spec_pb2.RuntimeArtifact) -> None:
    """KFP's mergeRuntimeArtifacts: the executor output's URI (if any) and metadata win."""
    if source.uri:
        target.uri = source.uri
    for key, value in source.metadata.fields.items():
        target.metadata.fields[key].CopyFrom(value)


def failed(runs: Mapping[str, TaskRun]) -> Optional[TaskRun]:
    """The first task that did not exit 0, if any."""
    return next((run for run in runs.values() if run.returncode), None)
