"""Still images (PNG, JPEG, ...): an image input is one frame, and its annotated copy is an image again,
in the format of the output's extension, encoded by OpenCV."""
from __future__ import annotations

from pathlib import Path

import cv2

from effdet_video.core.frames import FrameRecord
from effdet_video.errors import UserError
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.output_file import UnnamedFile

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
def check_image_output(output: Path) -> None:
    if output.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UserError(f"{output}: the input is a still image, so the annotated copy is an image too: "
                        f"use one of {', '.join(IMAGE_EXTENSIONS)}")


class ImageFileSink(FrameSink):
    """The annotated frame as an image file (display orientation, as drawn)."""

    needs_image = True

    def __init__(self, output: Path) -> None:
        check_image_output(output)
        self._file = UnnamedFile(output, binary=True)
        self._output = output

    def write(self, record: FrameRecord) -> None:
        if record.index:
            raise UserError(f"{self._output}: an image holds one frame; the input has more")
        ok, encoded = cv2.imencode(self._output.suffix.lower(), cv2.cvtColor(record.image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise UserError(f"{self._output}: OpenCV could not encode a {self._output.suffix} image")
        self._file.write(encoded.tobytes())

    def finish(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.discard()
