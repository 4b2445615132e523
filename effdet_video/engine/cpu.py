"""The eager CPU engine: the same graph, eager, float32, synchronous. The reference the CUDA engine and the
exported CPU engine (cpu_exported.py) must equal, and the CPU engine where no ONNX runtime is installed."""
from __future__ import annotations

import numpy as np
import torch

from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections, ReadyDetections
from effdet_video.engine.graph import build_detection_graph, host_nms, model_config
from effdet_video.engine.policy import cpu_threads
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError


class CpuEngine(Engine):
    device = "cpu"

    def __init__(self, spec: EngineSpec) -> None:
        if spec.precision not in ("auto", "fp32"):
            raise UserError(f"precision {spec.precision} needs a CUDA device or the openvino CPU backend; "
                            "the eager CPU engine runs fp32")
        if spec.nms_mode == "none":
            raise UserError("NMS mode 'none' (network only) is a CUDA benchmark mode")
        torch.set_num_threads(cpu_threads())
        self.spec = spec
        self.config = model_config(spec)
        self.batch_size = spec.batch_size
        self.image_size = self.config.image_size
        self.max_det = spec.max_det
        self.graph = build_detection_graph(spec, self.config, torch.float32, mode=spec.nms_mode).eval()
        self.build_info = {"backend": "eager", "precision": "fp32", "threads": torch.get_num_threads()}

    @torch.inference_mode()
    def submit(self, batch: InferenceBatch) -> PendingDetections:
        images = torch.from_numpy(np.ascontiguousarray(batch.images))
        valid_hw = torch.from_numpy(np.asarray(batch.valid_hw, dtype=np.int32))
        scales = torch.from_numpy(np.asarray(batch.image_scales, dtype=np.float32))
        outputs = self.graph(images, valid_hw, scales)
        if self.spec.nms_mode == "host":
            outputs = host_nms(outputs[:3], scales, self.config, self.max_det)
        detections, num_valid = outputs
        return ReadyDetections(DetectionBatch(detections.numpy().copy(), num_valid.int().numpy().copy(),
                                              batch.count))

    @torch.inference_mode()
    def infer_normalized(self, inputs: np.ndarray, image_scales: np.ndarray) -> DetectionBatch:
        """Detections from already normalised NHWC float inputs (AutoML's own pre-processing): the
        parity path for the fixtures, which bypasses our uint8 letterbox."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).permute(0, 3, 1, 2)
        detections, num_valid = self.graph.from_normalized(x, torch.from_numpy(image_scales.astype(np.float32)))
        return DetectionBatch(detections.numpy().copy(), num_valid.int().numpy().copy(), len(inputs))
