# The pipeline image. Kubeflow / Vertex AI Pipelines tasks, a Vertex AI training job and
# Dataflow workers (--sdk_container_image) all run it, so every step sees the same pins.
#   docker build -t us-central1-docker.pkg.dev/PROJECT/REPO/pipeline:TAG .
#   docker push us-central1-docker.pkg.dev/PROJECT/REPO/pipeline:TAG
# The Beam SDK image of the pinned Beam on Python 3.10 (TFX 1.16's Python): Dataflow starts
# its SDK harness through this image's entrypoint; pipeline tasks give their own command.
FROM apache/beam_python3.10_sdk:2.61.0

WORKDIR /pipeline

# The pinned set first: this layer changes only when a pin does.
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/base.in -r requirements/cloud.in -c requirements/constraints.txt

# The trainer's JAX, built for CUDA GPUs: the same version as the CPU pin (docs/measurements.md §1),
# with its NVIDIA libraries frozen too (requirements/gpu-constraints.txt).
RUN pip install --no-cache-dir "jax[cuda12]==$(sed -n 's/^jax==//p' requirements/constraints.txt)" \
    -c requirements/constraints.txt -c requirements/gpu-constraints.txt

# Our code, editable at /pipeline: compiled specs name /pipeline/setup.py and the embedded
# corpus at /pipeline/pipeline/embedded_corpus (pipeline/image.py).
COPY . /pipeline
RUN pip install --no-cache-dir --no-deps -e /pipeline && pip check

# keras-hub needs Keras 3: TF_USE_LEGACY_KERAS must stay unset (set to 1 it switches
# tf.keras to Keras 2). Fail the build if a base image ever sets it.
RUN test -z "${TF_USE_LEGACY_KERAS:-}"
ENV TF_CPP_MIN_LOG_LEVEL=2
