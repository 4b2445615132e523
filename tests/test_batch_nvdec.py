"""NVDEC decoding (pipeline/batch_nvdec.py): a clear message without PyNvVideoCodec; on a GPU with it,
the same frames and timestamps as PyAV's decoder."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from effdet_video import cli
from effdet_video.pipeline.batch_nvdec import NvdecFileSource
from effdet_video.stages.source import VideoFileSource

HAVE_NVDEC = importlib.util.find_spec("PyNvVideoCodec") is not None


@pytest.mark.skipif(HAVE_NVDEC, reason="PyNvVideoCodec is installed")
def test_without_pynvvideocodec_nvdec_is_a_one_line_user_error(media: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(media), "-o", str(tmp_path / "o"), "--decoder", "nvdec", "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --decoder nvdec needs NVIDIA's PyNvVideoCodec") and "\n" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_NVDEC, reason="needs PyNvVideoCodec")
def test_nvdec_frames_match_pyav(media: Path) -> None:
    clip = media / "pan-720p30-h264-noaudio.mp4"
    reference = VideoFileSource(clip)
    nvdec = NvdecFileSource(clip)
    try:
        expected = [(r.pts, r.picture.to_ndarray(format="rgb24")) for r in reference.frames()]
        got = [(r.pts, r.picture.to_ndarray(format="rgb24")) for r in nvdec.frames()]
    finally:
        reference.close()
        nvdec.close()
    assert [pts for pts, _ in got] == [pts for pts, _ in expected] and len(got) == 90
    for (_, ours), (_, theirs) in zip(got, expected):
        assert ours.shape == theirs.shape
        assert np.abs(ours.astype(np.int16) - theirs).mean() < 4  # colour conversions differ slightly
