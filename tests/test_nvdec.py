"""Decoder choice (--decoder auto|cpu|nvdec; sources/hw_decode.py, VideoFileSource): NVDEC through PyAV's
FFmpeg. On the CPU: the errors, the fallbacks and the once-per-process probe; on a GPU: NVDEC gives the
frames, timestamps and (within conversion noise) the pixels of the CPU decoder."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video.commands.common import single_video_opener, video_opener
from effdet_video.errors import UserError
from effdet_video.sources import hw_decode
from effdet_video.sources import source as source_module
from effdet_video.sources.source import VideoFileSource, VideoOpener
from effdet_video.stages.prepare import prepare_frame
from tests.support.fakes import FakeEngine, run_cli
from tests.support.pipeline_clips import probe

CLIP = "pan-720p30-h264-noaudio.mp4"  # 90 frames


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The NVDEC probe answers 'no CUDA device' (and records the GPUs it was asked about), with an empty cache."""
    asked: list[int] = []

    def probe_gpu(gpu_id: int) -> str:
        asked.append(gpu_id)
        return "no CUDA device here"

    monkeypatch.setattr(hw_decode, "_problems", {})
    monkeypatch.setattr(hw_decode, "_probe", probe_gpu)
    return asked


def decoded(source: VideoFileSource) -> list[tuple[int, int]]:
    """(pts, duration) of every frame, the source closed afterwards."""
    try:
        return [(record.pts, record.duration) for record in source.frames()]
    finally:
        source.close()


@pytest.mark.parametrize("command", [["run"], ["batch"]])
def test_nvdec_with_a_cpu_engine_is_a_one_line_error_and_leaves_no_output(media: Path, tmp_path: Path, capsys,
                                                                          engines, command) -> None:
    source, target = (media / CLIP, tmp_path / "out.mp4") if command == ["run"] else (media, tmp_path / "out")
    code, err = run_cli(capsys, *command, source, "-o", target, "--decoder", "nvdec", "--device", "cpu")
    assert code == 2
    assert err.startswith("error: --decoder nvdec decodes on the engine's GPU") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [] and engines == []


def test_auto_with_a_cpu_engine_decodes_on_the_cpu_without_probing_the_gpu(media: Path, probes: list[int]) -> None:
    opener = single_video_opener({"decoder": "auto", "device": "cpu"})
    source = opener(media / CLIP)
    assert source.decoder_used == "cpu"
    assert len(decoded(source)) == 90
    assert probes == []  # the GPU is left alone


def test_auto_falls_back_to_the_cpu_and_probes_each_gpu_once(media: Path, probes: list[int]) -> None:
    reference = decoded(VideoFileSource(media / CLIP))
    opener = VideoOpener("auto", [0, 1])  # batch mode's round robin over two GPUs
    sources = [opener(media / CLIP) for _ in range(4)]
    assert [source.decoder_used for source in sources] == ["cpu"] * 4
    assert all(decoded(source) == reference for source in sources)  # same frames, pts and durations
    assert probes == [0, 1]  # a thousand inputs do not retry a GPU without NVDEC


def test_the_cpu_decoder_leaves_half_the_cores_to_the_encoder_where_video_is_written(
        media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside x264, which needs most cores, fewer decoder threads cost less CPU per frame; alone, decoding
    keeps FFmpeg's own choice (a thread per core and one more) and its speed. Same frames either way."""
    monkeypatch.setattr(source_module, "cpu_threads", lambda: 40)  # FFmpeg's own choice stops at 17
    options = {"decoder": "auto", "device": "cpu"}
    beside = single_video_opener(options, writes_video=True)(media / CLIP)
    alone = single_video_opener(options)(media / CLIP)
    assert beside._stream.codec_context.thread_count == 20
    assert alone._stream.codec_context.thread_count < 20
    assert decoded(beside) == decoded(alone)


def test_run_decodes_beside_the_encoder_only_where_it_writes_video(
        media: Path, tmp_path: Path, capsys: pytest.CaptureFixture, engines: list,
        monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    real = source_module.VideoFileSource.__init__

    def spy(self, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        opened.append(self.decode_threads)

    monkeypatch.setattr(source_module.VideoFileSource, "__init__", spy)
    monkeypatch.setattr(source_module, "cpu_threads", lambda: 6)
    assert run_cli(capsys, "run", media / CLIP, "-o", tmp_path / "a.mp4", "--device", "cpu")[0] == 0
    assert run_cli(capsys, "run", media / CLIP, "--no-video", "--jsonl", tmp_path / "a.jsonl", "--device", "cpu")[0] == 0
    assert opened == [3, 0]


def test_auto_keeps_frames_on_the_gpu_where_the_engine_is(probes: list[int]) -> None:
    """Choosing costs no probe: a GPU without NVDEC is found out when the first input is opened."""
    assert video_opener("auto", ["cuda:1"]).frames_on_gpu
    assert video_opener("auto", ["cpu"]).decoder == "cpu"
    assert probes == []


def test_nvdec_without_nvdec_is_a_one_line_user_error(media: Path, probes: list[int]) -> None:
    with pytest.raises(UserError) as error:
        VideoFileSource(media / CLIP, decoder="nvdec")
    message = str(error.value)
    assert "decoder 'nvdec': no CUDA device here" in message and "use decoder 'cpu'" in message
    assert "\n" not in message


def test_the_probe_answers_once_per_gpu_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probe on a GPU no machine has; its clip is valid H.264 (the software decoder reads it)."""
    monkeypatch.setattr(hw_decode, "_problems", {})
    problem = hw_decode.nvdec_problem(999)
    assert problem is not None and "\n" not in problem
    assert problem.startswith(("FFmpeg could not decode on CUDA device 999", "this FFmpeg build has no CUDA"))
    assert hw_decode.nvdec_problem(999) is problem and list(hw_decode._problems) == [999]
    software = av.codec.CodecContext.create("h264", "r")
    frames = [frame for packet in [*hw_decode._probe_clip(), None] for frame in software.decode(packet)]
    assert [(frame.width, frame.height) for frame in frames] == [(hw_decode.PROBE_SIZE, hw_decode.PROBE_SIZE)]


def test_a_broken_file_gets_the_file_error_whatever_the_decoder(media: Path, probes: list[int]) -> None:
    for decoder in ("auto", "nvdec"):
        with pytest.raises(UserError, match="not a readable video file"):
            VideoFileSource(media / "broken-truncated.mp4", decoder=decoder)


def test_a_file_nvdec_cannot_open_falls_back_alone(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU passes the probe but the file's own hwaccel device cannot be made (here: a GPU that does not
    exist), as when the device fails only for this input: auto decodes it on the CPU, nvdec says why."""
    monkeypatch.setattr(hw_decode, "_problems", {0: None})
    monkeypatch.setattr("effdet_video.sources.source.nvdec_hwaccel",
                        lambda gpu_id, frames_on_gpu=False: av.codec.hwaccel.HWAccel("cuda", device="999",
                                                                                     allow_software_fallback=False))
    source = VideoFileSource(media / CLIP, decoder="auto")
    assert source.decoder_used == "cpu" and len(decoded(source)) == 90
    with pytest.raises(UserError, match=r"decoder 'nvdec': FFmpeg could not open it for NVDEC .*h264 stream"):
        VideoFileSource(media / CLIP, decoder="nvdec")


def test_batch_summary_says_which_decoder_decoded_each_input(media: Path, tmp_path: Path, capsys, engines) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(media / CLIP, folder / CLIP)
    report = tmp_path / "summary.json"
    code, err = run_cli(capsys, "batch", folder, "-o", tmp_path / "out", "--format", "jsonl", "--device", "cpu",
                        "--summary-json", report)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["decoder"] == "auto"
    assert [(item["decoder"], item["frames"]) for item in data["items"]] == [("cpu", 90)]
    assert any(line.startswith("status") and "decoder" in line for line in err.splitlines())  # the table's column


def test_prepare_takes_nv12_pictures_as_nvdec_gives_them(media: Path) -> None:
    """NVDEC's frames reach the pipeline as nv12; the prepare stage converts them like yuv420p ones."""
    source = VideoFileSource(media / CLIP)
    try:
        record = next(source.frames())
    finally:
        source.close()
    nv12 = record.picture.reformat(format="nv12")
    assert nv12.pts == record.pts
    prepare_frame(record, (128, 128))
    reference = record.image
    record.picture = nv12
    prepare_frame(record, (128, 128))
    assert record.image.shape == reference.shape
    assert np.abs(record.image.astype(np.int16) - reference).mean() < 3


def luma(picture: av.VideoFrame) -> np.ndarray:
    plane = picture.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width]


@pytest.mark.gpu
def test_nvdec_gives_the_frames_timestamps_and_pixels_of_the_cpu_decoder(media: Path) -> None:
    clip = media / "bench-1080p30-h264-aac.mp4"
    assert hw_decode.nvdec_problem(0) is None
    cpu, nvdec = VideoFileSource(clip), VideoFileSource(clip, decoder="nvdec")
    assert (cpu.decoder_used, nvdec.decoder_used) == ("cpu", "nvdec")
    assert nvdec.info == dataclasses.replace(cpu.info, pix_fmt="nv12")
    count = 0
    try:
        for ours, theirs in zip(nvdec.frames(), cpu.frames(), strict=True):
            assert (ours.pts, ours.duration, ours.rotation) == (theirs.pts, theirs.duration, theirs.rotation)
            assert ours.picture.format.name == "nv12"
            assert np.array_equal(luma(ours.picture), luma(theirs.picture))  # both decoders are bit-exact
            rgb = ours.picture.to_ndarray(format="rgb24").astype(np.int16)
            assert np.abs(rgb - theirs.picture.to_ndarray(format="rgb24")).mean() < 3  # chroma conversion
            count += 1
    finally:
        cpu.close()
        nvdec.close()
    assert count == 300 and nvdec.skipped_packets == cpu.skipped_packets == 0


@pytest.mark.gpu
def test_frames_kept_on_the_gpu_are_letterboxed_there_like_cpu_decoded_ones(media: Path) -> None:
    clip = media / "bench-1080p30-h264-aac.mp4"
    cpu, gpu = VideoFileSource(clip), VideoFileSource(clip, decoder="nvdec", frames_on_gpu=True)
    assert (gpu.decoder_used, gpu.frames_on_gpu, cpu.frames_on_gpu) == ("nvdec", True, False)
    count = 0
    try:
        for ours, theirs in zip(gpu.frames(), cpu.frames(), strict=True):
            assert (ours.pts, ours.duration, ours.rotation) == (theirs.pts, theirs.duration, theirs.rotation)
            assert hw_decode.on_gpu(ours.picture)
            drawn = count % 100 == 0  # the full frame comes to the host only when a sink draws on it
            prepare_frame(ours, (512, 512), needs_image=drawn)
            prepare_frame(theirs, (512, 512))
            assert ours.letterbox == theirs.letterbox and ours.net_image.shape == (512, 512, 3)
            difference = np.abs(ours.net_image.astype(np.int16) - theirs.net_image)
            assert difference.max() <= 3 and difference.mean() < 0.5, count
            if drawn:
                assert np.abs(ours.image.astype(np.int16) - theirs.image).mean() < 0.5
            else:
                assert ours.image is None
            count += 1
    finally:
        cpu.close()
        gpu.close()
    assert count == 300


@pytest.mark.gpu
def test_auto_on_a_cuda_engine_decodes_on_nvdec(media: Path) -> None:
    source = single_video_opener({"decoder": "auto", "device": "cuda"})(media / CLIP)
    assert (source.decoder_used, source.frames_on_gpu) == ("nvdec", True)
    assert len(decoded(source)) == 90


@pytest.mark.gpu
def test_run_with_nvdec_writes_every_frame(media: Path, tmp_path: Path, capsys, engines) -> None:
    output = tmp_path / "out.mp4"
    code, err = run_cli(capsys, media / CLIP, "-o", output, "--decoder", "nvdec", "--device", "cuda",
                        "--preset", "ultrafast")
    assert code == 0, err
    before, after = probe(media / CLIP), probe(output)
    assert after.frames == before.frames == 90 and after.pts == before.pts


@pytest.mark.gpu
def test_boxes_drawn_on_gpu_frames_are_the_boxes_drawn_on_the_host(media: Path, tmp_path: Path) -> None:
    """The same detections on NVDEC's frames in GPU memory (drawn there, encoded as nv12) and on the CPU
    decoder's frames (drawn on the host, encoded as yuv420p): the same decoded video."""
    from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
    from effdet_video.sinks.video_sink import VideoFileSink

    outputs = {}
    for decoder in ("nvdec", "cpu"):
        source = VideoFileSource(media / CLIP, decoder=decoder, frames_on_gpu=True)
        assert source.frames_on_gpu == (decoder == "nvdec")
        outputs[decoder] = tmp_path / f"{decoder}.mp4"
        sink = VideoFileSink(outputs[decoder], source.info, preset="ultrafast", crf=0)
        run_pipeline(source, FakeEngine(batch_size=4, image_size=(64, 64)), [sink], PipelineOptions())
        source.close()
    frames = {}
    for decoder, path in outputs.items():
        with av.open(str(path)) as container:
            frames[decoder] = [frame.to_ndarray().astype(int) for frame in container.decode(video=0)]
    assert len(frames["nvdec"]) == len(frames["cpu"]) == 90
    assert max(np.abs(a - b).max() for a, b in zip(frames["nvdec"], frames["cpu"])) <= 2
