"""A constant-velocity Kalman filter over boxes in continuous time, for many tracks at once.

Each track measures its box as centre x, centre y, width and height, and keeps their velocities per
second. The process noise is the exact discretisation of white-noise acceleration, so predicting over
0.04 s twice gives the same distribution as predicting over 0.08 s once: a clip with frames dropped, or
at a variable frame rate, sees the same motion model as the constant-rate clip. Noise scales with the box
(horizontal terms with its width, vertical ones with its height), as in ByteTrack and BoT-SORT.

Nothing couples two box coordinates (diagonal measurement and process noise, one velocity per
coordinate), so each track's 8x8 covariance is four independent 2x2 blocks (position, velocity) and stays
so; they are kept as three numbers per coordinate, which makes predict and update a few elementwise
array operations for all tracks together (exactly the full-matrix filter's result).
"""
from __future__ import annotations

import dataclasses

import numpy as np

# rows of a track's motion array [5, 4], each over (centre x, centre y, width, height)
POSITION, VELOCITY, VAR_POSITION, COV_POSITION_VELOCITY, VAR_VELOCITY = range(5)
MOTION_ROWS = 5


@dataclasses.dataclass(frozen=True)
class MotionNoise:
    """measurement: std of a box measurement, as a fraction of the box size (ByteTrack's 1/20).
    acceleration: std of the white-noise acceleration, box sizes per second squared per sqrt(second).
    initial_velocity: std of a new track's velocity, box sizes per second."""

    measurement: float = 0.05
    acceleration: float = 2.0
    initial_velocity: float = 2.0


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """[n, 4] x0, y0, x1, y1 -> [n, 4] centre x, centre y, width, height."""
    sizes = boxes[:, 2:4] - boxes[:, 0:2]
    return np.concatenate([boxes[:, 0:2] + sizes / 2, sizes], axis=1)


def motion_boxes(motion: np.ndarray) -> np.ndarray:
    """[n, 5, 4] motion -> [n, 4] x0, y0, x1, y1 of the current estimate."""
    position = motion[:, POSITION]
    half = position[:, 2:4] / 2
    return np.concatenate([position[:, 0:2] - half, position[:, 0:2] + half], axis=1)


def position_std(motion: np.ndarray) -> np.ndarray:
    """[n, 5, 4] motion -> [n, 2] standard deviation of the estimated centre (x, y)."""
    return np.sqrt(motion[:, VAR_POSITION, 0:2])


def _scales(position: np.ndarray) -> np.ndarray:
    """[n, 4]: the width for the horizontal coordinates (x, width), the height for the vertical ones."""
    return np.maximum(position[:, [2, 3, 2, 3]], 1.0)


class KalmanBoxFilter:
    """Stateless: the tracks' motion arrays [n, 5, 4] (see the row names above) belong to the caller."""

    def __init__(self, noise: MotionNoise = MotionNoise()) -> None:
        self.noise = noise

    def initiate(self, boxes: np.ndarray) -> np.ndarray:
        """New tracks at rest at their first boxes [n, 4]."""
        position = boxes_to_measurements(boxes)
        scale_sq = _scales(position) ** 2
        motion = np.zeros((len(boxes), MOTION_ROWS, 4))
        motion[:, POSITION] = position
        motion[:, VAR_POSITION] = (2 * self.noise.measurement) ** 2 * scale_sq
        motion[:, VAR_VELOCITY] = self.noise.initial_velocity ** 2 * scale_sq
        return motion

    def predict(self, motion: np.ndarray, dt: float) -> np.ndarray:
        """Every track `dt` seconds ahead (a new array)."""
        if dt <= 0 or not len(motion):
            return motion
        q = (self.noise.acceleration ** 2) * _scales(motion[:, POSITION]) ** 2
        pp, pv, vv = motion[:, VAR_POSITION], motion[:, COV_POSITION_VELOCITY], motion[:, VAR_VELOCITY]
        out = np.empty_like(motion)
        out[:, POSITION] = motion[:, POSITION] + dt * motion[:, VELOCITY]
        out[:, VELOCITY] = motion[:, VELOCITY]
        out[:, VAR_POSITION] = pp + 2 * dt * pv + dt * dt * vv + q * (dt ** 3 / 3)
        out[:, COV_POSITION_VELOCITY] = pv + dt * vv + q * (dt ** 2 / 2)
        out[:, VAR_VELOCITY] = vv + q * dt
        return out

    def update(self, motion: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Tracks corrected by their matched boxes [n, 4] (row i of each belongs together; a new array)."""
        measured = boxes_to_measurements(boxes)
        pp, pv, vv = motion[:, VAR_POSITION], motion[:, COV_POSITION_VELOCITY], motion[:, VAR_VELOCITY]
        innovation_var = pp + (self.noise.measurement ** 2) * _scales(motion[:, POSITION]) ** 2
        gain_position, gain_velocity = pp / innovation_var, pv / innovation_var
        residual = measured - motion[:, POSITION]
        out = np.empty_like(motion)
        out[:, POSITION] = motion[:, POSITION] + gain_position * residual
        out[:, VELOCITY] = motion[:, VELOCITY] + gain_velocity * residual
        out[:, VAR_POSITION] = pp - gain_position * pp
        out[:, COV_POSITION_VELOCITY] = pv - gain_position * pv
        out[:, VAR_VELOCITY] = vv - gain_velocity * pv
        return out
