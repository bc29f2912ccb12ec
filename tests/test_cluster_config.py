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
    assert "--serve-artifacts" in start
    assert "--backend-store-uri postgresql://mlflow@127.0.0.1:5432/mlflow" in start
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "nfbench" in setup


# ── closed by default: token auth, MLflow auth, the security group ──────────────────────
def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _firewall():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_firewall",
                                                  ROOT / "scripts" / "cluster_firewall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_node_starts_ray_with_token_authentication():
    config = _config()
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in config[key] if "ray start" in c]
    assert len(starts) == 2  # the head and the workers
    for command in starts:
        assert "export RAY_AUTH_MODE=token;" in command
        assert command.index("RAY_AUTH_MODE=token") < command.index("ray start")
    setup = " ".join(config["head_setup_commands"])
    assert "ray get-auth-token --generate > /dev/null" in setup  # the token is not printed
    assert "~/.ray/auth_token" in config["cluster_synced_files"]  # copied to each worker


def test_mlflow_is_behind_basic_auth_on_the_private_address():
    config = _config()
    (server,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c
                 and "pkill" not in c]
    assert "--app-name basic-auth" in server and "--host $HEAD_IP" in server
    assert "MLFLOW_AUTH_CONFIG_PATH=$HOME/mlflow/basic_auth.ini" in server
    assert "MLFLOW_AUTH_ADMIN_PASSWORD=$MLFLOW_TRACKING_PASSWORD" in server  # from the file
    assert ". ~/mlflow/server.env" in server  # its CSRF key, which basic auth requires
    assert "~/mlflow/server.env" not in config["cluster_synced_files"]
    assert server.index(". ~/.nfbench/mlflow.env") < server.index("mlflow server")
    (head,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    (worker,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert "MLFLOW_TRACKING_URI=http://$(hostname -I | awk '{print $1}'):5000" in head
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in worker  # the head's private IP
    for command in (head, worker):  # credentials reach Ray's processes through the env
        assert command.index("set -a; . ~/.nfbench/mlflow.env; set +a;") < command.index(
            "ray start")
    assert "~/.nfbench/mlflow.env" in config["cluster_synced_files"]
    text = (ROOT / "cluster.yaml").read_text()
    for leak in ("cat ~/.nfbench", "echo $MLFLOW_TRACKING_PASSWORD", "--password"):
        assert leak not in text


def _secret_commands(config: dict) -> list[str]:
    """The commands that write secrets (not the one that hands PostgreSQL its password)."""
    return [c for c in config["head_setup_commands"]
            if any(f in c for f in ("auth_token", "mlflow.env", "server.env", "basic_auth.ini",
                                    ".pgpass")) and "sudo -u postgres psql" not in c]


def test_head_setup_writes_its_secrets_once_mode_600_and_never_prints_them(tmp_path,
                                                                          monkeypatch):
    """The head's setup commands, run for real by bash in a fresh home directory."""
    import os
    import stat
    import subprocess
    import sys

    commands = _secret_commands(_config())
    assert len(commands) == 5
    env = {**os.environ, "HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    (tmp_path / "mlflow").mkdir()

    def run_all() -> str:
        out = []
        for command in commands:
            done = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                                  text=True, timeout=120, check=True)
            out.append(done.stdout + done.stderr)
        return "".join(out)

    printed = run_all()
    token = (tmp_path / ".ray" / "auth_token").read_text().strip()
    creds = (tmp_path / ".nfbench" / "mlflow.env").read_text()
    password = creds.split("MLFLOW_TRACKING_PASSWORD=")[1].strip()
    key = (tmp_path / "mlflow" / "server.env").read_text().split("SECRET_KEY=")[1].strip()
    pgpass = (tmp_path / ".pgpass").read_text()
    db_password = pgpass.strip().split(":")[4]
    assert pgpass.startswith("127.0.0.1:5432:mlflow:mlflow:") and len(db_password) >= 32
    assert len(token) >= 32 and len(password) >= 32 and len(key) >= 32  # MLflow wants ≥ 12
    assert creds.startswith("MLFLOW_TRACKING_USERNAME=nfbench\n")
    for secret_file in (tmp_path / ".ray" / "auth_token", tmp_path / ".nfbench" / "mlflow.env",
                        tmp_path / "mlflow" / "server.env", tmp_path / "mlflow" / "basic_auth.ini",
                        tmp_path / ".pgpass"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
    printed += run_all()  # a second setup (ray up again) keeps both secrets
    assert (tmp_path / ".ray" / "auth_token").read_text().strip() == token
    assert (tmp_path / ".nfbench" / "mlflow.env").read_text() == creds
    assert (tmp_path / ".pgpass").read_text() == pgpass
    assert token not in printed and password not in printed and key not in printed
    assert db_password not in printed
    # the file is a shell environment file, and MLflow reads the auth config as intended
    show = 'set -a; . ~/.nfbench/mlflow.env; set +a; printf %s "$MLFLOW_TRACKING_PASSWORD"'
    shown = subprocess.run(["bash", "-c", show], env=env, capture_output=True, text=True,
                           check=True).stdout
    assert shown == password
    from mlflow.server.auth.config import read_auth_config

    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "mlflow" / "basic_auth.ini"))
    auth = read_auth_config()
    assert auth.default_permission == "NO_PERMISSIONS" and auth.admin_username == "nfbench"
    assert auth.database_uri == f"sqlite:///{tmp_path}/mlflow/basic_auth.db"


def test_security_group_admits_ssh_from_the_admin_range_only():
    config = _config()
    fw = _firewall()
    sg = config["provider"]["security_group"]
    assert sg["GroupName"] == "nfbench-closed"
    (rule,) = sg["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    # as shipped, the range is the placeholder: the firewall script refuses to apply it
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [fw.PLACEHOLDER]
    with pytest.raises(fw.FirewallConfigError, match="placeholder; set your own"):
        fw.security_group(config)
    rule["IpRanges"] = [{"CidrIp": "198.51.100.7/32"}]
    assert fw.security_group(config)[0] == "nfbench-closed"
    rules = fw.security_group(config)[1]
    wanted = fw.wanted_rules("sg-123", rules)
    assert wanted[0] == {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-123"}]}
    assert wanted[1:] == rules and not fw.world_open(wanted)
    rule["IpRanges"] = [{"CidrIp": "0.0.0.0/0"}]
    with pytest.raises(fw.FirewallConfigError, match="0.0.0.0/0 opens port 22 to the whole"):
        fw.security_group(config)
    _validate(config)  # the section is valid for Ray's schema


def test_the_world_open_ssh_rule_ray_adds_is_found_and_revoked():
    """What Ray 2.60 itself puts on a group it creates: the config's rules plus SSH from
    0.0.0.0/0. The head's setup revokes exactly that rule."""
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    fw = _firewall()
    config = _config()
    ours = config["provider"]["security_group"]["IpPermissions"]
    rays = _create_default_inbound_rules({"sg-123"}, ours)
    assert fw.world_open(rays) == [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    assert "python3 ~/nfbench/scripts/cluster_firewall.py --own ~/nfbench/cluster.yaml" in (
        config["head_setup_commands"])


# ── PostgreSQL behind the head's MLflow ─────────────────────────────────────────────────
def test_the_heads_postgresql_role_and_database_are_made_once_with_the_pgpass_password(
        tmp_path, postgres):
    """The head's setup commands that make ~/.pgpass and hand its password to PostgreSQL,
    run for real by bash against a real PostgreSQL (``sudo -u postgres psql`` reaches the
    test's server through a stand-in ``sudo``); run twice, as a second ``ray up`` does."""
    import os
    import stat
    import subprocess
    import sys

    import psycopg

    config = _config()
    (pgpass_cmd,) = [c for c in config["head_setup_commands"] if "> ~/.pgpass" in c]
    (role_cmd,) = [c for c in config["head_setup_commands"] if "| sudo -u postgres psql" in c]
    assert "sudo -u postgres psql" in role_cmd and "$PW" in role_cmd
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "sudo").write_text('#!/bin/sh\n[ "$1" = -u ] && shift 2\nexec "$@"\n')
    (shims / "sudo").chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path), "PGHOST": "127.0.0.1",
           "PGPORT": str(postgres.port), "PGUSER": "nfbench", "PGDATABASE": "postgres",
           "PATH": f"{shims}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                   f"{os.environ['PATH']}"}
    printed = ""
    for _ in range(2):
        for command in (pgpass_cmd, role_cmd):
            done = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                                  text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            printed += done.stdout + done.stderr
    password = (tmp_path / ".pgpass").read_text().strip().split(":")[4]
    assert stat.S_IMODE((tmp_path / ".pgpass").stat().st_mode) == 0o600
    assert password not in printed
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="mlflow",
                         password=password, dbname="mlflow") as con:
        owner = con.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                            "WHERE datname = 'mlflow'").fetchone()[0]
    assert owner == "mlflow"
    with pytest.raises(psycopg.OperationalError):  # the password is what lets it in
        psycopg.connect(host="127.0.0.1", port=postgres.port, user="mlflow",
                        password="wrong", dbname="mlflow").close()
