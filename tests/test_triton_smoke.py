"""A real Triton server loads an ONNX model through the python backend and matches onnxruntime run directly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from localstack import LocalTriton, TritonStartError
from serving.triton_repository import TensorSpec, write_onnx_version

pytestmark = pytest.mark.triton


def _tiny_mlp(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Tanh", ["z"], ["y"])],
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


INPUTS = [TensorSpec("x", "float32", (4,))]
OUTPUTS = [TensorSpec("y", "float32", (3,))]


def test_triton_serves_onnx_numbers_equal_to_onnxruntime(triton: LocalTriton, triton_repository: Path,
                                                         tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    onnx_path = _tiny_mlp(tmp_path / "mlp.onnx", seed=1)
    write_onnx_version(triton_repository, "smoke_mlp", onnx_path, INPUTS, OUTPUTS, manifest={"purpose": "smoke"})
    started = time.monotonic()
    triton.load_model("smoke_mlp")
    print(f"model loaded in {time.monotonic() - started:.2f} s")
    assert triton.model_ready("smoke_mlp", "1")

    batch = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = ort.InferenceSession(str(onnx_path)).run(["y"], {"x": batch})[0]

    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    request = grpcclient.InferInput("x", batch.shape, "FP32")
    request.set_data_from_numpy(batch)
    got_grpc = grpc.infer("smoke_mlp", [request], outputs=[grpcclient.InferRequestedOutput("y")]).as_numpy("y")
    grpc.close()

    http = httpclient.InferenceServerClient(triton.url.removeprefix("http://"))
    try:
        request = httpclient.InferInput("x", batch.shape, "FP32")
        request.set_data_from_numpy(batch)
        got_http = http.infer("smoke_mlp", [request]).as_numpy("y")
    finally:
        http.close()

    assert got_grpc.shape == expected.shape == (5, 3)
    np.testing.assert_allclose(got_grpc, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_http, expected, rtol=0, atol=1e-6)
    assert np.abs(expected).sum() > 0  # a real, non-trivial output


def test_a_new_version_is_served_after_reload(triton: LocalTriton, triton_repository: Path, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    write_onnx_version(triton_repository, "swap_mlp", _tiny_mlp(tmp_path / "v1.onnx", seed=1), INPUTS, OUTPUTS)
    triton.load_model("swap_mlp")
    v2 = _tiny_mlp(tmp_path / "v2.onnx", seed=2)
    write_onnx_version(triton_repository, "swap_mlp", v2, INPUTS, OUTPUTS)
    triton.load_model("swap_mlp")
    assert triton.model_ready("swap_mlp", "2")
    batch = np.ones((2, 4), dtype=np.float32)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    request = grpcclient.InferInput("x", batch.shape, "FP32")
    request.set_data_from_numpy(batch)
    latest = client.infer("swap_mlp", [request]).as_numpy("y")
    client.close()
    np.testing.assert_allclose(latest, ort.InferenceSession(str(v2)).run(["y"], {"x": batch})[0], atol=1e-6)


def test_loading_a_broken_model_is_a_clear_error(triton: LocalTriton, triton_repository: Path, tmp_path: Path) -> None:
    write_onnx_version(triton_repository, "good_mlp", _tiny_mlp(tmp_path / "good.onnx", seed=3), INPUTS, OUTPUTS)
    triton.load_model("good_mlp")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx file")
    write_onnx_version(triton_repository, "broken_mlp", broken, INPUTS, OUTPUTS)
    with pytest.raises(TritonStartError, match="broken_mlp"):
        triton.load_model("broken_mlp")
    assert not triton.model_ready("broken_mlp")
    assert triton.is_ready() and triton.model_ready("good_mlp")  # the server keeps serving the other models


def test_server_stops_and_a_second_start_is_fresh(tmp_path: Path) -> None:
    from localstack import free_port
    from localstack.process import alive

    repo = tmp_path / "repo"
    repo.mkdir()
    server = LocalTriton(model_repository=repo, work_dir=tmp_path / "w", http_port=free_port(),
                         grpc_port=free_port(), metrics_port=free_port())
    started = time.monotonic()
    server.start()
    print(f"tritonserver ready in {time.monotonic() - started:.2f} s")
    pid = int(server.pid_path.read_text())
    assert server.stop() is True
    assert not alive(pid) and not server.is_ready()
    server.start()
    assert server.is_ready()
    server.stop()
