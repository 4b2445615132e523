"""Fine-tuning an AutoML .h5 (COCO's 90 classes) on a user's COCO-format dataset of 4 classes, on CPU, and
loading the result back into the pipeline's engine."""
import json

import numpy as np
from click.testing import CliRunner

from effdet_video.commands.train import command as train_command
from effdet_video.configs import get_model_config
from effdet_video.demo import synth
from effdet_video.demo.scene_kit import load_scene_kit
from effdet_video.engine.base import InferenceBatch
from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.weights import checkpoint_num_classes, load_automl_h5
from effdet_video.training.checkpoint import initial_model


def test_fine_tune_automl_checkpoint_and_load_into_engine(automl_fixtures, tmp_path):
    source = automl_fixtures / "efficientdet-d0-seed0.h5"
    dataset = synth.write_coco_dataset(load_scene_kit(), tmp_path / "data", num_images=2, seed=5, size=(96, 128))
    out = tmp_path / "tuned.h5"
    result = CliRunner().invoke(train_command, [
        "--data", str(dataset), "--images", str(tmp_path / "data" / "images"), "--model", "demo",
        "--init", str(source), "--image-size", "128", "--epochs", "1", "--batch-size", "2", "--workers", "0",
        "--device", "cpu", "--half", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["num_classes"] == 4 and summary["steps"] == 1
    assert (tmp_path / "tuned.labels.txt").read_text().split() == ["cat", "cup", "rocket", "face"]
    assert checkpoint_num_classes(out, 9) == 4

    # Everything but the class predictor came from the AutoML checkpoint (one SGD/AdamW step moves it a little).
    coco_model = EfficientDet(get_model_config("d0"))
    load_automl_h5(coco_model, source)
    tuned = initial_model(get_model_config("demo"), out)
    stem = "backbone.stem.conv.weight"
    diff = (tuned.state_dict()[stem] - coco_model.state_dict()[stem]).abs().max()
    assert 0 < diff < 0.01

    spec = EngineSpec(model="demo", weights=str(out), batch_size=1, device="cpu", image_size=(128, 128))
    with build_engine(spec) as engine:
        frame = np.zeros((1, 128, 128, 3), np.uint8)
        detections = engine.infer(InferenceBatch(frame, np.array([[128, 128]], np.int32),
                                                 np.ones(1, np.float32), 1))
    assert detections.detections.shape == (1, 100, 6)
    classes = detections.frame(0)[:, 5]
    assert ((classes >= 1) & (classes <= 4)).all()
