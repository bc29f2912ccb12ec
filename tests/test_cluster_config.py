"""cluster.yaml is a valid Ray cluster-launcher config and keeps its services off public ports."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_validates_against_rays_schema():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    _validate(config)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0  # jobs stay off the head
    assert any("g5" in t["node_config"]["InstanceType"] for n, t in types.items()
               if n != config["head_node_type"])


def test_schema_check_can_fail():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["worker.gpu"]["min_wrkers"] = 1
    with pytest.raises(Exception, match="min_wrkers|Additional properties"):
        _validate(config)


def test_services_bind_no_public_address():
    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in text
    assert "mlflow server" in start and "--host $HEAD_IP" in start
    assert "--serve-artifacts" in start and "--backend-store-uri sqlite:///" in start
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "nfbench" in setup
