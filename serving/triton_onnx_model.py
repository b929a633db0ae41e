"""Triton python-backend model that runs ``model.onnx`` (next to this file) with onnxruntime.

Copied verbatim as ``model.py`` into every version folder written by :mod:`serving.triton_repository`. It runs
inside Triton's own virtualenv (numpy<2), so it imports only numpy, onnxruntime and Triton's backend utilities.
Inputs and outputs are passed through by name; every request of a dynamic batch is run in one ORT call when
their shapes allow it.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        config = json.loads(args["model_config"])
        self.output_names = [o["name"] for o in config["output"]]
        options = ort.SessionOptions()
        threads = int(os.environ.get("TRAIL_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.path.join(version_dir, "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def execute(self, requests):
        feeds_per_request = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            for request in requests
        ]
        sizes = [len(next(iter(feeds.values()))) for feeds in feeds_per_request]
        try:
            merged = {
                name: np.concatenate([feeds[name] for feeds in feeds_per_request]) for name in self.input_names
            }
            results = self.session.run(self.output_names, merged)
            per_request = []
            start = 0
            for size in sizes:
                per_request.append([r[start : start + size] for r in results])
                start += size
        except ValueError:  # shapes differ across requests (e.g. sequence length): run them one by one
            per_request = [self.session.run(self.output_names, feeds) for feeds in feeds_per_request]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in zip(self.output_names, outputs)]
            )
            for outputs in per_request
        ]
