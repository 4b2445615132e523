"""Detections as files: JSON Lines (one object per frame), COCO results JSON (one list), and with
tracking a per-track summary JSON."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from effdet_video.configs.labels import label_name
from effdet_video.core.frames import FrameRecord
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.output_file import UnnamedFile


def frame_object(record: FrameRecord, labels: dict[int, str] | None = None) -> dict[str, Any]:
    """One JSON Lines row: index, pts in seconds and the kept detections (boxes in display pixels), with
    tracking each with its "track_id" (null for a detection no track claims)."""
    detections = [
        {"box": [round(float(v), 2) for v in row[:4]], "score": round(float(row[4]), 4),
         "class_id": int(row[5]), "class_name": label_name(int(row[5]), labels)}
        for row in record.detections
    ]
    if record.track_ids is not None:
        for detection, track_id in zip(detections, record.track_ids.tolist()):
            detection["track_id"] = track_id if track_id >= 0 else None
    return {"index": record.index, "pts": round(record.seconds, 6), "detections": detections}


def coco_results(record: FrameRecord) -> list[dict[str, Any]]:
    """COCO results entries of one frame; image_id is the frame index, bbox is [x, y, width, height]."""
    return [
        {"image_id": record.index, "category_id": int(row[5]),
         "bbox": [round(float(row[0]), 2), round(float(row[1]), 2),
                  round(float(row[2] - row[0]), 2), round(float(row[3] - row[1]), 2)],
         "score": round(float(row[4]), 4)}
        for row in record.detections
    ]


class _TextFileSink(FrameSink):
    """A text output without a name until `finish` publishes it (see UnnamedFile)."""

    def __init__(self, output: Path) -> None:
        self._file = UnnamedFile(output)

    def _write(self, text: str) -> None:
        self._file.write(text)

    def finish(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.discard()


class JsonLinesSink(_TextFileSink):
    def __init__(self, output: Path, labels: dict[int, str] | None = None) -> None:
        super().__init__(output)
        self._labels = labels

    def write(self, record: FrameRecord) -> None:
        self._write(json.dumps(frame_object(record, self._labels)) + "\n")


class CocoResultsSink(_TextFileSink):
    """Streams the JSON list entry by entry, so memory does not grow with the video's length."""

    def __init__(self, output: Path) -> None:
        super().__init__(output)
        self._write("[")
        self._entries = 0

    def write(self, record: FrameRecord) -> None:
        for entry in coco_results(record):
            self._write(("," if self._entries else "") + "\n" + json.dumps(entry))
            self._entries += 1

    def finish(self) -> None:
        self._write("\n]\n")
        super().finish()


@dataclasses.dataclass
class _TrackSummary:
    class_id: int
    first_pts: float
    last_pts: float
    frames: int = 0
    score_sum: float = 0.0


class TracksJsonSink(_TextFileSink):
    """At the end, one entry per track: its id, class, first and last pts (seconds), the frames it was
    seen in and its mean score. Needs a tracking run (`FrameRecord.track_ids`)."""

    def __init__(self, output: Path, labels: dict[int, str] | None = None) -> None:
        super().__init__(output)
        self._labels = labels
        self._tracks: dict[int, _TrackSummary] = {}

    def write(self, record: FrameRecord) -> None:
        if record.track_ids is None:
            raise RuntimeError("a tracks summary needs a run with tracking")
        seconds = record.seconds
        for row, track_id in zip(record.detections.tolist(), record.track_ids.tolist()):
            if track_id < 0:
                continue
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _TrackSummary(int(row[5]), seconds, seconds)
            track.last_pts = seconds
            track.frames += 1
            track.score_sum += row[4]

    def finish(self) -> None:
        entries = [{"track_id": track_id, "class_id": track.class_id,
                    "class_name": label_name(track.class_id, self._labels),
                    "first_pts": round(track.first_pts, 6), "last_pts": round(track.last_pts, 6),
                    "frames": track.frames, "mean_score": round(track.score_sum / track.frames, 4)}
                   for track_id, track in sorted(self._tracks.items())]
        self._write(json.dumps(entries, indent=1) + "\n")
        super().finish()
