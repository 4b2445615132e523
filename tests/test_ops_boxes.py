"""Box arithmetic, anchors on odd sizes, and the pipeline's letterbox/normalise pair (hand-made inputs)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from effdet_video.configs import get_model_config
from effdet_video.ops.anchors import feature_sizes, generate_anchors
from effdet_video.ops.boxes import box_iou, clip_boxes, decode_boxes, yxyx_to_xyxy
from effdet_video.ops.letterbox import letterbox_uint8, normalize_and_mask


def test_decode_boxes_applies_centre_and_log_size_codes():
    anchors = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), h 20, w 40
    codes = torch.tensor([[[0.5, -0.25, 0.0, math.log(2.0)]]])
    # centre y 20 + 0.5 * 20 = 30, centre x 40 - 0.25 * 40 = 30, h 20, w 80
    torch.testing.assert_close(decode_boxes(codes, anchors), torch.tensor([[[20.0, -10.0, 40.0, 70.0]]]))


def test_box_iou_pairs_and_empty_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [10.0, 10.0, 0.0, 0.0], [0.0, 0.0, 0.0, 10.0]])
    expected = torch.tensor([[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]])  # inverted corners count, empty is 0
    torch.testing.assert_close(box_iou(a, b), expected)


def test_clip_and_layout():
    boxes = torch.tensor([[-5.0, 600.0, 300.0, 700.0]])
    clipped = clip_boxes(boxes, (288, 512))
    assert clipped.tolist() == [[0.0, 512.0, 288.0, 512.0]]
    assert yxyx_to_xyxy(clipped).tolist() == [[512.0, 0.0, 512.0, 288.0]]


def test_anchors_on_odd_sizes_use_ceil_halving_and_float_strides():
    config = get_model_config("d0")
    assert feature_sizes((500, 300), 7)[3:] == [(63, 38), (32, 19), (16, 10), (8, 5), (4, 3)]
    anchors = generate_anchors(config, (500, 300))
    assert anchors.shape == ((63 * 38 + 32 * 19 + 16 * 10 + 8 * 5 + 4 * 3) * 9, 4)
    first = anchors[0]  # level 3, location (0, 0), octave 0, aspect 1: 4 * stride, centred at stride / 2
    stride_y, stride_x = 500 / 63, 300 / 38
    expected = [stride_y / 2 - 2 * stride_y, stride_x / 2 - 2 * stride_x, stride_y / 2 + 2 * stride_y,
                stride_x / 2 + 2 * stride_x]
    np.testing.assert_allclose(first.numpy(), expected, rtol=1e-6)


def test_letterbox_uint8_fills_the_given_buffer_top_left():
    image = np.full((100, 200, 3), 7, np.uint8)
    buffer = np.full((64, 64, 3), 255, np.uint8)
    out, geometry = letterbox_uint8(image, (64, 64), out=buffer)
    assert out is buffer and geometry.resized_hw == (32, 64) and geometry.image_scale == 3.125
    assert (buffer[:32] == 7).all() and (buffer[32:] == 255).all()  # padding left as it was
    with pytest.raises(ValueError, match="expected uint8"):
        letterbox_uint8(image, (64, 64), out=np.zeros((64, 64, 3), np.float32))


def test_normalize_and_mask_zeroes_outside_each_valid_region():
    images = torch.full((2, 4, 6, 3), 100, dtype=torch.uint8)
    valid_hw = torch.tensor([[2, 3], [4, 6]], dtype=torch.int32)
    mean, std = (100.0, 50.0, 0.0), (1.0, 2.0, 4.0)
    out = normalize_and_mask(images, valid_hw, mean, std, dtype=torch.float16)
    assert out.shape == (2, 3, 4, 6) and out.dtype == torch.float16
    expected_inside = torch.tensor([0.0, 25.0, 25.0], dtype=torch.float16).view(3, 1, 1)
    assert (out[0, :, :2, :3] == expected_inside).all()
    assert out[0, :, 2:].abs().sum() == 0 and out[0, :, :, 3:].abs().sum() == 0
    assert (out[1] == expected_inside).all()
