"""The detection matcher the parity tests rely on: rows may trade places only with nearly equal scores."""
import numpy as np
import pytest

from tests.support.automl_fixture import assert_same_detections

REFERENCE = np.array([[0, 0, 10, 10, 0.9, 1], [20, 20, 30, 30, 0.89995, 2], [40, 40, 50, 50, 0.5, 3]], float)


def test_rows_of_nearly_equal_score_may_trade_places():
    assert_same_detections(REFERENCE[[1, 0, 2]], REFERENCE, box_px=0.5, score=1e-4)


@pytest.mark.parametrize("row, column, change", [(2, 0, 0.6), (1, 4, 2e-4), (1, 5, 5)])
def test_a_box_score_or_class_off_fails(row, column, change):
    ours = REFERENCE.copy()
    ours[row, column] += change
    with pytest.raises(AssertionError):
        assert_same_detections(ours, REFERENCE, box_px=0.5, score=1e-4)


def test_rows_of_different_scores_may_not_trade_places():
    reference = REFERENCE.copy()
    reference[1, 4] = 0.8
    with pytest.raises(AssertionError, match="AutoML row 0"):
        assert_same_detections(reference[[1, 0, 2]], reference, box_px=0.5, score=1e-4)


def test_a_missing_row_fails():
    with pytest.raises(AssertionError, match="2 detections, AutoML has 3"):
        assert_same_detections(REFERENCE[:2], REFERENCE, box_px=0.5, score=1e-4)
