"""`Optimize` with a module request: the server writes the problem from the user's file in
its sandbox and streams the same events; bad modules are INVALID_ARGUMENT with the reason.
Also `drkernel client optimize FILE.py:Class` and the grpc-js example against a real server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from server_harness import answer, running, server_config

from evaluator import Evaluator
from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import result_pb2 as rpb
from refine.backends.scripted import ScriptedBackend
from server.cli import main
from server.client import AsyncClient, module_request
from server.config import ServerConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[1]
GPT = ROOT / "examples" / "models" / "gpt.py"
KERNEL = (ROOT / "examples" / "models" / "kernels" / "rms_norm.py").read_text()
GRPC_JS = ROOT / "examples" / "grpc-js"


EVALUATOR_WORKERS = 1
EVALUATOR_TIMEOUT_S = 120


def _config() -> ServerConfig:
    return server_config(evaluator__timeout_s=120)


def _target(server: object) -> str:
    return f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]


async def test_a_module_request_is_written_in_the_sandbox_and_refined(
        tokenizer: Any, evaluator: Evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(KERNEL)])
    module = module_request(GPT, "RMSNorm", inputs="[[2, 8, 64]]", init="[64]")
    async with running(backend, evaluator, _config()) as server, \
            AsyncClient(_target(server)) as client:
        events = [e async for e in client.optimize("", module=module,
                                                   policy={"max_turns": 1})]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "problem_built" and kinds[-1] == "finished"
    built = events[0].problem_built
    assert built.how == "source"
    assert "class Model(RMSNorm):" in built.reference and "return [64, 1e-06]" in built.reference
    assert "torch.randn((2, 8, 64))" in built.reference
    assert "def apply_rotary" not in built.reference, "only what RMSNorm needs"
    assert backend.prompts and "class Model(RMSNorm)" in backend.prompts[0].messages[0]["content"]
    best = events[-1].finished
    assert best.HasField("best"), best
    assert best.best.result.status == rpb.EVAL_STATUS_CORRECT


@pytest.mark.parametrize(("source", "class_name", "inputs", "message"), [
    (GPT.read_text(), "Missing", "[[2, 64]]", "defines no nn.Module class 'Missing'"),
    (GPT.read_text(), "RMSNorm", "[[2, 32]]", "does not run on these inputs"),
    ("import torch\nimport os\nos._exit(3)\n", "M", "[[2]]", "before reporting"),
    ("from mypkg.layers import Norm as M\n", "M", "[[2]]", "No module named 'mypkg'"),
])
async def test_a_module_that_cannot_be_written_is_invalid_argument(
        tokenizer: Any, evaluator: Evaluator, source: str, class_name: str, inputs: str,
        message: str) -> None:
    module = pb.ModuleRequest(source=source, class_name=class_name, init_json="[64]",
                              inputs_json=inputs, file_name="user.py")
    async with running(ScriptedBackend(tokenizer, []), evaluator, _config()) as server, \
            AsyncClient(_target(server)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [e async for e in client.optimize("", module=module)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")


@pytest.mark.parametrize(("fields", "message"), [
    ({"init_json": "{bad"}, "module.init_json is not JSON"),
    ({"inputs_json": ""}, "module.inputs_json is empty"),
    ({"class_name": "not a name"}, "is not a Python name"),
])
async def test_a_malformed_module_request_is_refused_before_any_build(
        tokenizer: Any, evaluator: Evaluator, fields: dict[str, str], message: str) -> None:
    module = {"source": GPT.read_text(), "class_name": "RMSNorm", "init_json": "[64]",
              "inputs_json": "[[2, 64]]", **fields}
    async with running(ScriptedBackend(tokenizer, []), evaluator, _config()) as server, \
            AsyncClient(_target(server)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [e async for e in client.optimize("", module=module)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")


async def test_the_users_code_runs_confined(tokenizer: Any, evaluator: Evaluator,
                                            tmp_path: Path) -> None:
    """Module code that writes a file outside its scratch folder leaves nothing behind."""
    marker = tmp_path / f"escaped-{uuid.uuid4().hex}"
    source = (f"import torch\nopen({str(marker)!r}, 'w').write('x')\n"
              "class M(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n")
    module = pb.ModuleRequest(source=source, class_name="M", inputs_json="[[2, 4]]")
    async with running(ScriptedBackend(tokenizer, []), evaluator, _config()) as server, \
            AsyncClient(_target(server)) as client:
        try:
            _ = [e async for e in client.optimize("", module=module, policy={"max_turns": 1})]
        except grpc.aio.AioRpcError as exc:  # refused, or the build saw a private /tmp
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not marker.exists()


async def test_the_client_command_and_the_grpc_js_example(tokenizer: Any,
                                                          evaluator: Evaluator) -> None:
    backend = ScriptedBackend(tokenizer, [answer(KERNEL)] * 2)
    async with running(backend, evaluator, _config()) as server:
        code = await asyncio.to_thread(main, [
            "client", "--server", _target(server), "optimize", f"{GPT}:RMSNorm",
            "--init", "[64]", "--inputs", "[[2, 8, 64]]", "--max-turns", "1"])
        assert code == 0
        if shutil.which("node") is None or not (GRPC_JS / "node_modules").is_dir():
            pytest.skip("node or examples/grpc-js/node_modules (npm install) missing")
        done = await asyncio.to_thread(subprocess.run, [
            "node", str(GRPC_JS / "optimize_module.js"), "--server", _target(server),
            str(GPT), "RMSNorm", "--init", "[64]", "--inputs", "[[2, 8, 64]]",
            "--max-turns", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "problem_built"
    assert events[-1]["finished"]["best"]["result"]["status"] == "EVAL_STATUS_CORRECT"
