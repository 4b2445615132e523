"""How the shipped demo model (assets/efficientdet-demo.h5) is made: synthetic scene-kit data, training from
scratch for a wall-time budget, evaluation on held-out synthetic stills. Run on a GPU machine:

    python -m effdet_video.demo.demo_model --out OUT --seconds 300
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from effdet_video.configs import get_model_config
from effdet_video.demo import synth
from effdet_video.demo.scene_kit import load_scene_kit
from effdet_video.models.checkpoints import DEMO_MODEL
from effdet_video.training import checkpoint, data, evaluate, trainer

TRAIN_SEED, VALIDATION_SEED = 1, 2
DEMO_SETTINGS = dict(batch_size=32, optimizer="adamw", learning_rate=1.5e-3, weight_decay=1e-4,
                     jitter=(0.6, 1.4), log_every=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/effdet-demo-data"))
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=14)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kit = load_scene_kit()
    config = get_model_config(DEMO_MODEL)
    start = time.monotonic()
    train_json = synth.write_coco_dataset(kit, args.work / "train", args.train_images, TRAIN_SEED,
                                          workers=args.workers)
    val_json = synth.write_coco_dataset(kit, args.work / "val", args.val_images, VALIDATION_SEED,
                                        workers=args.workers)
    print(f"data: {args.train_images} + {args.val_images} images in {time.monotonic() - start:.1f}s", flush=True)
    train_samples = data.read_coco_dataset(train_json, args.work / "train" / "images", config.num_classes)
    val_samples = data.read_coco_dataset(val_json, args.work / "val" / "images", config.num_classes)
    model = checkpoint.initial_model(config, None)
    settings = trainer.TrainSettings(epochs=1000, max_seconds=args.seconds, workers=args.workers, device=device,
                                     **DEMO_SETTINGS)
    summary = trainer.train(model, train_samples, settings, log=lambda line: print(line, flush=True))
    results = trainer.predict_images(model, val_samples, batch_size=32)
    metrics = evaluate.mean_average_precision(json.loads(val_json.read_text()), results)
    summary.update(val_map50=metrics["map"], val_per_class=metrics["per_class"], device=device)
    print(json.dumps(summary), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({k: (v.half() if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()},
               args.out / "efficientdet-demo.pt")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
