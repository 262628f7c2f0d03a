"""Writing result files: atomic, valid JSON, readable like any file the user writes."""

import json
import os
import stat

import pytest

from tf_resnet9.outputs.results import write_json_atomic


def test_writes_json_with_the_users_file_mode(tmp_path):
    path = tmp_path / "sub" / "results.json"
    old_umask = os.umask(0o022)
    try:
        write_json_atomic(path, {"test_accuracy": 0.94})
    finally:
        os.umask(old_umask)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.94}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert os.listdir(path.parent) == ["results.json"]  # no temporary file left


def test_nan_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"loss": 1.0})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"loss": float("nan")})
    assert json.loads(path.read_text()) == {"loss": 1.0}
    assert os.listdir(tmp_path) == ["results.json"]
