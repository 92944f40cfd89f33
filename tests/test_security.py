"""Security defaults: what the tool starts listens on 127.0.0.1 behind Ray's token; weights are safe to load."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def _calls(path: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(name)]


def test_every_torch_load_in_the_product_is_weights_only():
    """Our code never unpickles arbitrary objects: a `torch.load` without weights_only=True fails this test."""
    offenders = []
    for path in [*ROOT.glob("orchestrator/**/*.py"), *ROOT.glob("trainables/**/*.py")]:
        for call in _calls(path, "torch.load"):
            ok = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in call.keywords)
            if not ok:
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert offenders == []


def test_models_are_loaded_from_safetensors_without_remote_code_by_default():
    from trainables.config import ModelConfig

    assert ModelConfig().trust_remote_code is False
    calls = _calls(ROOT / "trainables/model/loading.py", "from_pretrained")
    assert calls, "no from_pretrained call found: the test no longer looks at the loading code"
    model_calls = [c for c in calls if "AutoTokenizer" not in ast.unparse(c.func)]
    source = (ROOT / "trainables/model/loading.py").read_text()
    assert "use_safetensors=True" in source and model_calls


@pytest.mark.slow
def test_local_cluster_keeps_token_auth_and_listens_on_localhost_only(monkeypatch):
    import ray

    from orchestrator.cluster import ray_cluster

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_cluster(num_cpus=1):
        url = ray._private.worker.global_worker.node.address_info["webui_url"]
        host, port = url.rsplit(":", 1)
        listening = [c.laddr for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)]
        anonymous = requests.get(f"http://{url}/api/version", timeout=10)
        token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()
        signed = requests.get(f"http://{url}/api/version", timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert host == "127.0.0.1" and listening and all(a.ip == "127.0.0.1" for a in listening)
    assert anonymous.status_code in (401, 403), anonymous.status_code
    assert signed.status_code == 200
