"""What a damaged or cut-short input lost, for the one-line warnings the commands print.

Decoders skip what they cannot read without saying so: a Matroska demuxer resynchronises at the next
cluster after damage and drops the packets in between silently, and a file cut short simply ends. What
is visible afterwards is the gaps: a frame whose pts lies several frame periods after the previous
one's (a one-frame gap is not told apart from variable frame rate), and a last frame that ends well
before the duration the header declares."""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

# A file counts as cut short when its video ends this much (or three frame periods, if more) before
# the duration its header declares: audio tracks and encoder delay make them differ by a few frames.
ENDED_EARLY_TOLERANCE_S = 0.25
# A gap between two frames' timestamps longer than this many nominal frame periods is frames lost, not
# variable frame rate (whose longer frames last up to about twice the average).
GAP_PERIODS = 2.5


@dataclasses.dataclass
class DamageLog:
    """Filled in while decoding one input; `warnings` says what was lost.

    missing_frames: frames absent from gaps in the timestamps (about; `gaps` holds after which
    seconds); declared_s / found_s: the header's duration and how far the frames reached (set by
    `ended`)."""

    path: Path
    time_base: Fraction
    period: int  # nominal frame period in time_base units
    missing_frames: int = 0
    gaps: list[float] = dataclasses.field(default_factory=list)
    declared_s: float | None = None
    found_s: float | None = None
    _first_pts: int | None = None
    _last_pts: int | None = None
    _end_pts: int | None = None

    def frame(self, pts: int, duration: int) -> None:
        """A frame came out: a gap of more than GAP_PERIODS nominal periods before it counts as missing
        frames (shorter gaps are variable frame rate, which a container's frame durations do not always
        show: Matroska gives every frame the nominal one)."""
        if self._last_pts is not None and pts - self._last_pts > GAP_PERIODS * self.period:
            self.missing_frames += round((pts - self._last_pts) / self.period) - 1
            self.gaps.append(float(self._last_pts * self.time_base))
        if self._first_pts is None:
            self._first_pts = pts
        self._last_pts = pts if self._last_pts is None else max(self._last_pts, pts)
        self._end_pts = max(self._end_pts or pts, pts + (duration or self.period))

    def ended(self, declared_s: float | None) -> None:
        """The stream ended; `declared_s` is the duration the container declares (None if it does not)."""
        if self._end_pts is None or self._first_pts is None:
            return
        self.declared_s = declared_s
        self.found_s = float((self._end_pts - self._first_pts) * self.time_base)

    @property
    def ended_early(self) -> bool:
        if self.declared_s is None or self.found_s is None:
            return False
        tolerance = max(ENDED_EARLY_TOLERANCE_S, 3 * float(self.period * self.time_base))
        return self.declared_s - self.found_s > tolerance

    def warnings(self, skipped_packets: int) -> list[str]:
        """One line per problem, each naming the file; none for an intact input. `skipped_packets`: those
        the demuxer or decoder rejected."""
        lines = []
        lost = []
        if skipped_packets:
            lost.append(f"skipped {skipped_packets} unreadable packets")
        if self.missing_frames:
            where = ", ".join(f"{seconds:.2f} s" for seconds in self.gaps[:3]) + (" ..." if len(self.gaps) > 3 else "")
            lost.append(f"about {self.missing_frames} frames missing (after {where})")
        if lost:
            lines.append(f"{self.path}: damaged input: {'; '.join(lost)}; every readable frame was processed")
        if self.ended_early:
            lines.append(f"{self.path}: the input ended early: its header declares {self.declared_s:.2f} s, "
                         f"the video stops at {self.found_s:.2f} s (truncated file?); processed what is there")
        return lines
