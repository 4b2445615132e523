"""What a batch processes: the videos of a folder (by extension, recursive) or of a list file, each with
the relative path its outputs mirror under the output folder."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from effdet_video.errors import UserError
from effdet_video.sinks.encoding import DEFAULT_CODECS
from effdet_video.sinks.image_sink import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv",
                    ".wmv", ".mpg", ".mpeg", ".3gp")
OUTPUT_KINDS = ("video", "jsonl", "coco", "tracks")


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One input video; `relative` is its path under the batch root, which its outputs mirror."""

    path: Path
    relative: Path

    def outputs(self, output_dir: Path, kinds: tuple[str, ...]) -> dict[str, Path]:
        """The output files of `kinds`: the video (an image, for an image input) keeps the input's name
        (plus .mp4 when its extension cannot be written); detections append .jsonl / .coco.json (the
        tracks summary .tracks.json) to the full name, so that clip.mp4 and clip.mov in one folder never
        share an output."""
        target = output_dir / self.relative
        names = {
            "video": target if target.suffix.lower() in (*DEFAULT_CODECS, *IMAGE_EXTENSIONS)
            else target.with_name(target.name + ".mp4"),
            "jsonl": target.with_name(target.name + ".jsonl"),
            "coco": target.with_name(target.name + ".coco.json"),
            "tracks": target.with_name(target.name + ".tracks.json"),
        }
        return {kind: names[kind] for kind in kinds}


def parse_extensions(text: str) -> tuple[str, ...]:
    """'mp4, .MOV' -> ('.mp4', '.mov')."""
    extensions = tuple("." + part.strip().lower().lstrip(".") for part in text.split(",") if part.strip())
    if not extensions:
        raise UserError("the list of video extensions is empty")
    return extensions


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def find_in_folder(root: Path, output_dir: Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
                   recursive: bool = True) -> list[BatchItem]:
    """Videos under `root` in path order. Hidden files and folders (e.g. partial outputs) and the output
    folder itself, when it lies inside `root`, are left out, so that a rerun never takes outputs as inputs."""
    root, output_dir = root.resolve(), output_dir.resolve()
    items = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders
                               if recursive and not d.startswith(".") and not _inside(here / d, output_dir))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                items.append(BatchItem(here / name, (here / name).relative_to(root)))
    return sorted(items, key=lambda item: item.relative.as_posix())


def read_list_file(list_file: Path) -> list[BatchItem]:
    """One path a line (blank lines and '#' comments ignored), relative to the list file's folder. Outputs
    mirror the paths below the deepest folder all inputs share."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{list_file}: cannot read the list file ({error})") from None
    paths = [(list_file.parent / line.strip()).resolve() for line in lines
             if line.strip() and not line.lstrip().startswith("#")]
    if not paths:
        return []
    if len(set(paths)) < len(paths):
        raise UserError(f"{list_file}: lists a file more than once")
    common = Path(os.path.commonpath([path.parent for path in paths]))
    return [BatchItem(path, path.relative_to(common)) for path in paths]


def find_inputs(source: Path, output_dir: Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
                recursive: bool = True) -> list[BatchItem]:
    """A folder is searched; any other file is read as a list of inputs."""
    if source.is_dir():
        items = find_in_folder(source, output_dir, extensions, recursive)
    elif source.is_file():
        items = read_list_file(source)
    else:
        raise UserError(f"{source}: no such folder or list file")
    if not items:
        raise UserError(f"{source}: no input videos found (extensions: {', '.join(extensions)})")
    return items
