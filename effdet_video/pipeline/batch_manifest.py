"""The batch manifest, OUTDIR/.effdet-batch.json: what each input produced, so that a rerun skips the
inputs that are done and redoes the rest.

An input is done when its entry says so for the same file (size and mtime) and the same output options,
and all its outputs exist. Outputs appear only complete (the sinks write to a temporary name and rename),
and the manifest itself is replaced atomically, so an interrupted batch leaves nothing half-written.

Where several processes on several machines write one OUTDIR (Ray actors), each writes a shard of its own,
OUTDIR/.effdet-batch.<tag>.json, and the driver merges the shards into the manifest (`merge_shards`).

The options hash is that of an `OutputShape`, the typed settings the run itself uses (model, detection
filter, tracking, encoder, formats). Manifests written before it was typed hashed the command's raw
options instead: their entries no longer match, and such inputs are redone once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from effdet_video.sinks.factory import EncoderSettings
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import TrackingOptions

MANIFEST_NAME = ".effdet-batch.json"
SHARD_PATTERN = ".effdet-batch.*.json"
VERSION = 1


def fingerprint(path: Path) -> dict[str, int]:
    """Cheap identity of an input: a changed file has a new size or modification time."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclasses.dataclass(frozen=True)
class OutputShape:
    """Everything that shapes a batch's outputs, so that changing any of it redoes the inputs on a rerun:
    the model's identity and precision, the kept detections, the tracking, the encoder (None when no
    video is written) and the output kinds. Engine batch sizes, devices and job counts shape nothing and
    are left out."""

    model: str
    weights: str | None
    random_weights: bool
    precision: str
    max_det: int
    detection_filter: DetectionFilter
    tracking: TrackingOptions | None
    encoder: EncoderSettings | None
    outputs: tuple[str, ...]


def _json_value(value: object) -> object:
    """Sets as sorted lists (their order is not theirs to give), anything else json cannot take as text."""
    return sorted(value) if isinstance(value, (set, frozenset)) else str(value)


def options_hash(shape: OutputShape) -> str:
    """A stable hash of `shape`: its fields as JSON with sorted keys."""
    text = json.dumps(dataclasses.asdict(shape), sort_keys=True, default=_json_value)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class ManifestEntry:
    """status: 'done' or 'failed'; outputs relative to the output folder."""

    status: str
    fingerprint: dict[str, int]
    options: str
    outputs: list[str]
    frames: int = 0
    fps: float = 0.0
    wall_s: float = 0.0
    skipped_packets: int = 0
    error: str | None = None
    finished_at: str = ""


def shard_name(tag: str) -> str:
    """The file name of one writer's shard of the manifest."""
    return f".effdet-batch.{tag}.json"


def _read_entries(path: Path) -> dict[str, ManifestEntry]:
    """An unreadable or foreign manifest is ignored (everything is redone), never an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            return {}
        return {key: ManifestEntry(**value) for key, value in data["entries"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


class Manifest:
    """Entries keyed by the input's relative path; thread-safe; every `record` rewrites the file (`name`:
    the manifest's, or a shard's)."""

    def __init__(self, output_dir: Path, name: str = MANIFEST_NAME) -> None:
        self.path = output_dir / name
        self.output_dir = output_dir
        self._lock = threading.Lock()
        self._entries: dict[str, ManifestEntry] = _read_entries(self.path) if self.path.exists() else {}

    def merge_shards(self) -> int:
        """Take in the entries of every shard beside the manifest (the later of two entries for one input
        wins), write the manifest, then delete the shards; the number of shards merged."""
        shards = sorted(self.output_dir.glob(SHARD_PATTERN)) if self.output_dir.is_dir() else []
        if not shards:
            return 0
        with self._lock:
            for shard in shards:
                for key, entry in _read_entries(shard).items():
                    mine = self._entries.get(key)
                    if mine is None or entry.finished_at >= mine.finished_at:
                        self._entries[key] = entry
            self._write()
        for shard in shards:
            shard.unlink(missing_ok=True)
        return len(shards)

    def get(self, key: str) -> ManifestEntry | None:
        with self._lock:
            return self._entries.get(key)

    def is_done(self, key: str, input_fingerprint: dict[str, int], options: str) -> bool:
        entry = self.get(key)
        return (entry is not None and entry.status == "done" and entry.fingerprint == input_fingerprint
                and entry.options == options
                and all((self.output_dir / output).is_file() for output in entry.outputs))

    def record(self, key: str, entry: ManifestEntry) -> None:
        entry.finished_at = entry.finished_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with self._lock:
            self._entries[key] = entry
            self._write()

    def _write(self) -> None:
        data = {"version": VERSION, "entries": {key: dataclasses.asdict(entry)
                                                for key, entry in sorted(self._entries.items())}}
        handle, temporary = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", dir=self.output_dir)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=1)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
