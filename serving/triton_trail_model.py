"""Triton python-backend model for TRAIL: ``trail_onnx.TrailOnnx`` over the version folder it sits in.

Copied as ``model.py`` into every TRAIL version folder (with ``trail_onnx.py``), so a version is self-contained;
it runs in Triton's own virtualenv and imports only numpy, onnxruntime, tokenizers and Triton's utilities. A
dynamic batch of requests is scored in one ORT call; the rows with a cue are explained in one batched decode,
each as its DECODING input says.
"""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, version_dir)
        from trail_decoding import Decoding
        from trail_onnx import TrailOnnx

        self.Decoding = Decoding

        threads = int(os.environ.get("TRAIL_ORT_THREADS", "0")) or None
        # CUDA first where the onnxruntime-gpu wheel is installed (make setup GPU=1), the CPU otherwise
        self.model = TrailOnnx(version_dir, threads=threads)

    def execute(self, requests):
        rows = []
        for request in requests:
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()  # noqa: E731
            rows.append((get("PROMPT").reshape(-1), get("FEATURES"), get("CURRENT_LOG_COUNT").reshape(-1),
                         get("CUE").reshape(-1), get("DECODING").reshape(-1, 2)))
        prompts = [_text(p) for row in rows for p in row[0]]
        features = np.concatenate([row[1] for row in rows]).astype(np.float32)
        current = np.concatenate([row[2] for row in rows]).astype(np.float32)
        cues = [_text(c) for row in rows for c in row[3]]
        decodings = [self.Decoding.from_list(d) for row in rows for d in row[4]]
        scores = self.model.score(prompts, features, current).astype(np.float32)
        wanted = [i for i, cue in enumerate(cues) if cue]  # rows with a cue are explained, in one batch
        texts = [""] * len(prompts)
        explained = self.model.explain_batch([prompts[i] for i in wanted], [cues[i] for i in wanted],
                                             [decodings[i] for i in wanted])
        for i, text in zip(wanted, explained):
            texts[i] = text
        responses, start = [], 0
        for row in rows:
            size = len(row[0])
            log_count = scores[start: start + size].reshape(size, 1)
            explanation = np.array([t.encode("utf-8") for t in texts[start: start + size]], dtype=object)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("LOG_COUNT", log_count),
                pb_utils.Tensor("EXPLANATION", explanation.reshape(size, 1)),
                pb_utils.Tensor("PROMPT_FORMAT", np.full((size, 1), self.model.prompt_format, dtype=np.int32)),
            ]))
            start += size
        return responses
