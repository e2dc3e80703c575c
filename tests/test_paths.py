"""Local paths and URIs: staging a URI's files for libraries that read only local files."""

import json
import os

from tfx.dsl.io import fileio

from components.runtime.paths import copy_tree, is_uri, local_path
from components.tracking.buffered_run import BufferedRun
from tests.ram_filesystem import ram_folder


def _files(root):
    """relative path -> bytes of every file under a local folder."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                found[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return found


def test_uris_and_local_paths():
    assert is_uri("gs://b/x") and is_uri("ram://x") and is_uri("file:///tmp/x")
    assert not is_uri("/tmp/x") and not is_uri("relative/x") and not is_uri("C:\\x")


def test_a_local_path_is_handed_through_without_a_copy(tmp_path):
    with local_path(str(tmp_path)) as local:
        assert local == str(tmp_path)
    assert tmp_path.exists()


def test_a_folder_at_a_uri_is_staged_whole_under_its_name_and_removed_after(tmp_path):
    source = tmp_path / "bundle"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    (source / "assets").mkdir()  # an empty folder: nothing to log, nothing lost
    with ram_folder(tmp_path.name) as root:
        copy_tree(str(source), f"{root}/Trainer/bundle")
        with local_path(f"{root}/Trainer/bundle") as folder:
            assert os.path.basename(folder) == "bundle" and not is_uri(folder)
            assert _files(folder) == _files(source)
        assert not os.path.exists(folder)
        with local_path(f"{root}/Trainer/bundle/variables/variables.index") as file:
            assert os.path.basename(file) == "variables.index"
            with open(file, "rb") as f:
                assert f.read() == b"index"
        assert not os.path.exists(file)


def test_the_calls_an_outage_left_unlogged_are_listed_at_a_uri(tmp_path):
    """On Vertex the Trainer's model_run folder is a gs:// URI."""
    tracked = BufferedRun(run=None, tracking_uri="http://127.0.0.1:9")
    tracked.enqueue([("log_artifact", ["gs://b/vocab.txt", "vocabulary"])])
    with ram_folder(tmp_path.name) as root:
        fileio.makedirs(f"{root}/model_run")
        with fileio.open(f"{root}/model_run/log.txt", "w") as f:
            f.write("not the model's")
        tracked.write_pending(f"{root}/model_run/mlflow_unlogged.json")
        with fileio.open(f"{root}/model_run/mlflow_unlogged.json") as f:
            assert json.load(f) == [{"call": "log_artifact", "args": ["gs://b/vocab.txt", "vocabulary"]}]


def test_beam_and_tensorflow_see_the_same_ram_files(tmp_path):
    """tests.ram_filesystem gives Beam `ram://`, as the Beam steps of a bucket-rooted
    pipeline need; siblings sharing a prefix (`model`, `model_run`) stay apart."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.testing.util import assert_that, equal_to

    with ram_folder(tmp_path.name) as root:
        fileio.makedirs(f"{root}/model_run")
        with fileio.open(f"{root}/model_run/log.txt", "w") as f:
            f.write("not the model's")
        with beam.Pipeline() as p:
            _ = p | beam.Create([b"a", b"b"]) | beam.io.WriteToTFRecord(f"{root}/model/data", file_name_suffix=".gz")
        (written,) = tf.io.gfile.glob(f"{root}/model/*")
        assert sorted(r.numpy() for r in tf.data.TFRecordDataset(written, compression_type="GZIP")) == [b"a", b"b"]
        with beam.Pipeline() as p:
            read = p | beam.io.ReadFromTFRecord(f"{root}/model/*")
            assert_that(read, equal_to([b"a", b"b"]))
    assert not tf.io.gfile.glob(f"{root}/*")
