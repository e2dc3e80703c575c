"""Keys of the Trainer's `custom_config`, shared by the pipeline, executor and module file."""

# Set by pipeline/dag.py from the config: only what shapes the trained model, since
# every value here is part of TFX's cache key for the Trainer.
MODEL = "model"  # dict: GPTConfig fields except vocabulary_size
TRAIN = "train"  # dict: TrainConfig fields
LOWERCASE = "lowercase"
PARAMS = "params"  # flat dict logged as MLflow params
CHECKPOINT_ROOT = "checkpoint_root"
COMPILATION_CACHE_DIR = "compilation_cache_dir"  # JAX's persistent compilation cache
CODE_DIGEST = "code_digest"  # digest of the training code: a change retrains

# Added at run time by the Trainer executor.
VOCABULARY_PATH = "vocabulary_path"
PIPELINE_RUN_ID = "pipeline_run_id"
PIPELINE_NAME = "pipeline_name"
MLFLOW = "mlflow"  # dict: tracking_uri, experiment_name (from the environment)
DATASETS = "datasets"  # list of dicts: split, source, sha256, profile (counts and shares)

# train.warm_start's values: from scratch, or from the champion's weights (warm_start.py).
WARM_START_CHOICES = ("none", "champion")
