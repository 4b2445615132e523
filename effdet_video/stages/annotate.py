"""Drawing detections on the original frame with OpenCV: a box and a 'name score' label per detection."""
from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

from effdet_video.configs.labels import label_name

_GOLDEN_RATIO = 0.618033988749895


@functools.cache
def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour per class (hues spaced by the golden ratio)."""
    hue = (int(class_id) * _GOLDEN_RATIO) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_detections(image: np.ndarray, detections: np.ndarray, labels: dict[int, str] | None = None) -> None:
    """Draw rows (x0, y0, x1, y1, score, class_id) onto the RGB uint8 `image` in place. Line width and
    text size follow the frame size so labels stay legible from 240p to 4K."""
    height, width = image.shape[:2]
    thickness = max(1, round(min(height, width) / 360))
    font_scale = 0.4 * thickness
    for x0, y0, x1, y1, score, class_id in detections:
        colour = class_colour(int(class_id))
        top_left = (int(round(x0)), int(round(y0)))
        cv2.rectangle(image, top_left, (int(round(x1)), int(round(y1))), colour, thickness)
        text = f"{label_name(int(class_id), labels)} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        label_top = max(0, top_left[1] - text_h - baseline)
        cv2.rectangle(image, (top_left[0], label_top), (top_left[0] + text_w, label_top + text_h + baseline),
                      colour, cv2.FILLED)
        cv2.putText(image, text, (top_left[0], label_top + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
