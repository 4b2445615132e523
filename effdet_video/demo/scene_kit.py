"""The photographs the synthetic scenes are made of, shipped inside the package (assets/scene-*.jpg).

They come from scikit-image's bundled sample images (BSD-licensed): object cut-outs (the class a detector
learns) and backgrounds. Shipping small JPEG copies keeps scikit-image out of the runtime dependencies;
`export_scene_kit` is how the shipped files were made (it needs scikit-image).
"""
from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

# (class name, skimage.data function, crop rows y0:y1, cols x0:x1, mask shape)
SPRITE_SOURCES = (
    ("cat", "chelsea", (0, 300, 40, 400), "ellipse"),
    ("cup", "coffee", (10, 390, 70, 480), "ellipse"),
    ("rocket", "rocket", (110, 300, 275, 345), "rectangle"),
    ("face", "astronaut", (10, 200, 135, 290), "ellipse"),
)
BACKGROUND_SOURCES = ("hubble_deep_field", "immunohistochemistry", "retina", "grass", "gravel", "brick",
                      "camera", "moon", "stereo_motorcycle")
BACKGROUND_LONG_SIDE = 480
JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class Sprite:
    name: str
    image: np.ndarray  # uint8 [h, w, 3] RGB
    mask_shape: str    # 'ellipse' or 'rectangle': the object's alpha, drawn at whatever size it is pasted


@dataclasses.dataclass(frozen=True)
class SceneKit:
    sprites: tuple[Sprite, ...]
    backgrounds: tuple[np.ndarray, ...]  # uint8 [h, w, 3] RGB

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class i + 1 (1-based ids, as COCO) is sprites[i]."""
        return tuple(sprite.name for sprite in self.sprites)


def _assets_dir() -> Path:
    return Path(str(resources.files("effdet_video").joinpath("assets")))


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"scene kit image missing: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_scene_kit(directory: Path | None = None) -> SceneKit:
    """The shipped scene kit (or one exported to `directory`)."""
    root = directory or _assets_dir()
    sprites = tuple(Sprite(name, _read_rgb(root / f"scene-object-{name}.jpg"), shape)
                    for name, _source, _crop, shape in SPRITE_SOURCES)
    backgrounds = tuple(_read_rgb(root / f"scene-background-{name}.jpg") for name in BACKGROUND_SOURCES)
    return SceneKit(sprites, backgrounds)


def export_scene_kit(directory: Path) -> None:
    """Write the kit's JPEGs from scikit-image's sample images (how assets/scene-*.jpg were made)."""
    import skimage.data

    def rgb(name: str) -> np.ndarray:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]

    def write(path: Path, image: np.ndarray) -> None:
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])

    directory.mkdir(parents=True, exist_ok=True)
    for name, source, (y0, y1, x0, x1), _shape in SPRITE_SOURCES:
        write(directory / f"scene-object-{name}.jpg", rgb(source)[y0:y1, x0:x1])
    for name in BACKGROUND_SOURCES:
        image = rgb(name)
        scale = min(1.0, BACKGROUND_LONG_SIDE / max(image.shape[:2]))
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        write(directory / f"scene-background-{name}.jpg", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
