"""`effdet-video train`: train or fine-tune an EfficientDet on a COCO-format dataset, AutoML's way, and
write the result as an AutoML-layout .h5 (loadable by every command through --weights) plus a labels file
beside it (`<output stem>.labels.txt`, from the dataset's category names)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from effdet_video.commands.common import debug_option
from effdet_video.errors import UserError


def _jitter(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--jitter must be 'MIN,MAX', got {text!r}") from None
    if not 0 < low <= high:
        raise UserError(f"--jitter needs 0 < MIN <= MAX, got {text!r}")
    return low, high


def _categories(json_path: Path) -> dict[int, str]:
    try:
        data = json.loads(json_path.read_text())
        return {int(c["id"]): str(c.get("name", f"class {c['id']}")) for c in data.get("categories", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise UserError(f"cannot read categories of {json_path}: {error}") from None


@click.command("train")
@click.option("--data", "data_json", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="COCO-format annotations JSON.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder the JSON's file_name entries are relative to.")
@click.option("--model", default="d0", show_default=True, help="Architecture: d0..d7x, or demo.")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="AutoML .h5 to start from (any class count: the class predictor is re-initialised "
                   "when it differs). Default: random initialisation.")
@click.option("--num-classes", type=click.IntRange(1), default=None,
              help="Classes of the trained model [default: the dataset's largest category id].")
@click.option("--image-size", type=click.IntRange(64), default=None, help="Square input size [default: model's].")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--max-seconds", type=float, default=None, help="Stop after this wall time (schedule included).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True)
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--jitter", default="0.1,2.0", show_default=True, help="Scale-jitter range (AutoML's default).")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Data-loading processes.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--half", is_flag=True, help="Store the weights in fp16 (half the file size).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The trained weights (.h5).")
@debug_option
def command(data_json: Path, images: Path, model: str, init: Path | None, num_classes: int | None,
            image_size: int | None, epochs: int, max_seconds: float | None, batch_size: int, optimizer: str,
            learning_rate: float, weight_decay: float, jitter: str, workers: int, device: str, half: bool,
            output: Path, **_: object) -> None:
    """Train an EfficientDet on a COCO-format dataset (fine-tune with --init)."""
    from effdet_video.configs import get_model_config
    from effdet_video.configs.labels import labels_path, write_labels
    from effdet_video.engine.factory import resolve_device
    from effdet_video.training import checkpoint, data, trainer

    if output.suffix != ".h5":
        raise UserError(f"output {output} must end in .h5")
    jitter_range = _jitter(jitter)
    categories = _categories(data_json) if data_json.is_file() else {}
    overrides = {"num_classes": num_classes or max(categories, default=0) or None,
                 "image_size": image_size}
    config = get_model_config(model, **{k: v for k, v in overrides.items() if v is not None})
    samples = data.read_coco_dataset(data_json, images, config.num_classes)
    network = checkpoint.initial_model(config, init)
    settings = trainer.TrainSettings(epochs=epochs, max_seconds=max_seconds, batch_size=batch_size,
                                     optimizer=optimizer, learning_rate=learning_rate, weight_decay=weight_decay,
                                     jitter=jitter_range, workers=workers, device=resolve_device(device))
    summary = trainer.train(network, samples, settings, log=lambda line: click.echo(line, err=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_weights(network.cpu(), output, half=half)
    names = [categories.get(i, f"class {i}") for i in range(1, config.num_classes + 1)]
    write_labels(labels_path(output), names)
    click.echo(json.dumps({"weights": str(output), "model": config.name, "num_classes": config.num_classes,
                           "image_size": list(config.image_size), **summary}))
