"""What an engine is built for: the key of the engine cache and the argument of `build_engine`."""
from __future__ import annotations

import dataclasses

from effdet_video.engine.policy import RUN_GPU_BATCH


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    model: str = "d0"                 # 'd0'..'d7x' or 'efficientdet-d0'..
    weights: str | None = None        # AutoML .h5 path; None: look up / download by model name
    random_weights: bool = False      # seeded random weights, for benchmarking only
    batch_size: int = RUN_GPU_BATCH   # commands choose theirs: policy.default_batch_size
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    precision: str = "auto"           # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    max_det: int = 100                # static detection cap per image
    nms_method: str | None = None     # gaussian | hard; None: the model config's (AutoML: gaussian)
    nms_mode: str = "device"          # device: NMS inside the graph; host: only for `bench` comparisons
    image_size: tuple[int, int] | None = None  # (height, width) override of the model's size
    cpu_backend: str = "auto"         # auto | eager | onnxruntime | openvino (engine/cpu_exported.py)
    cpu_streams: int = 1              # batches a CPU runtime runs at once (policy.cpu_streams)
