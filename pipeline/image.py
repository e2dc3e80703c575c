"""Where the Dockerfile puts this project inside the pipeline image.

A compiled Kubeflow/Vertex spec and Dataflow's flags name files as the containers see
them, never as they lie on the machine that compiled the spec.
"""

ROOT = "/pipeline"
SETUP_FILE = ROOT + "/setup.py"
EMBEDDED_CORPUS_DIR = ROOT + "/pipeline/embedded_corpus"
