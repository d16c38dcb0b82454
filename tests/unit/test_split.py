"""worker.split and worker.mp3frames without ffmpeg: which jobs split, the ranges, the
frames each segment keeps, the LAME tag's CRC."""

from __future__ import annotations

import pytest

from shared.media.facts import AudioStream, ProbeResult
from shared.options import JobOptions, Normalize, Trim
from tests.unit.conftest import make_settings
from worker import mp3frames, split

FRAME = 1152


def probe(
    seconds: float = 600,
    rate: int = 44100,
    fmt: str = "mov,mp4,m4a,3gp,3g2,mj2",
    audio_start_s: float = 0.0,
) -> ProbeResult:
    return ProbeResult(
        format_name=fmt,
        duration_s=seconds,
        bit_rate=None,
        audio=[
            AudioStream(index=0, codec="aac", channels=2, sample_rate=rate, start_s=audio_start_s)
        ],
        start_s=0.0,
    )


def test_ranges_start_on_frame_boundaries_and_the_last_runs_to_the_end() -> None:
    ranges = split.plan(600, 44100, 120)

    assert len(ranges) == 5
    assert all(r.start_sample % FRAME == 0 for r in ranges)
    assert [r.end_sample for r in ranges[:-1]] == [r.start_sample for r in ranges[1:]]
    assert ranges[0].start_sample == 0 and ranges[-1].end_sample is None
    assert ranges[1].start_sample == pytest.approx(120 * 44100, abs=FRAME)


def test_a_short_remainder_joins_the_last_range() -> None:
    ranges = split.plan(130, 48000, 60)

    assert len(ranges) == 2  # 60 s and 70 s, not 60 + 60 + 10
    assert ranges[1].end_sample is None


def test_each_segment_keeps_its_own_frames_after_the_pre_roll() -> None:
    first, middle, last = split.plan(360, 44100, 120)

    head = split.window(first, 44100)
    assert (head.cut.start_s, head.skip_frames) == (0, 0)
    assert head.keep_frames == (middle.start_sample - first.start_sample) // FRAME
    inner = split.window(middle, 44100)
    assert inner.skip_frames == split.PREROLL_FRAMES
    assert inner.cut.start_s * 44100 == pytest.approx(
        middle.start_sample - split.PREROLL_FRAMES * FRAME
    )
    assert inner.cut.samples == (
        (split.PREROLL_FRAMES + inner.keep_frames + split.POSTROLL_FRAMES) * FRAME  # type: ignore[operator]
    )
    tail = split.window(last, 44100)
    assert tail.keep_frames is None and tail.cut.samples is None


@pytest.mark.parametrize(
    ("options", "source", "expected"),
    [
        (JobOptions(), probe(), True),
        (JobOptions(quality=4, channels=1), probe(), True),
        (JobOptions(), probe(seconds=200), False),
        (JobOptions(format="m4a"), probe(), False),
        (JobOptions(normalize=Normalize(target_lufs=-16)), probe(), False),
        (JobOptions(trim=Trim(start_s=10)), probe(), False),
        (JobOptions(sample_rate_hz=48000), probe(), False),
        (JobOptions(), probe(rate=22050), False),
        (JobOptions(), probe(fmt="matroska,webm"), False),
        (JobOptions(), probe(fmt="wav"), True),
        (JobOptions(), probe(audio_start_s=0.021), False),  # video first: seeks would shift
    ],
)
def test_only_mp3_jobs_that_need_no_whole_signal_split(
    options: JobOptions, source: ProbeResult, expected: bool
) -> None:
    assert split.should_split(options, source, make_settings()) is expected


def test_splitting_off_when_the_threshold_is_zero() -> None:
    assert not split.should_split(JobOptions(), probe(), make_settings(split_min_duration_s=0))


def test_lame_tag_crc_is_crc16_arc() -> None:
    assert mp3frames.crc16(b"123456789") == 0xBB3D
    assert mp3frames.crc16(b"12345678") == mp3frames.crc16(b"8", mp3frames.crc16(b"1234567"))


def test_a_frame_that_is_not_ours_is_refused() -> None:
    with pytest.raises(ValueError):
        mp3frames.layout(b"not an mp3 at all")


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_segments_measure_every_100_ms_block_once_on_one_grid(rate: int) -> None:
    step = rate // 10
    measured: list[int] = []
    for part in split.plan(400, rate, 60):
        win = split.window(part, rate)
        grid = split.blocks(part, win, rate)
        cut_start = part.start_sample - win.skip_frames * FRAME
        origin = cut_start + grid.start_sample  # where this segment's measurement starts
        assert origin % step == 0 and origin <= part.start_sample
        assert part.start_sample == 0 or origin - cut_start >= split.WARMUP_SAMPLES
        first = origin // step + grid.first
        count = grid.count if grid.count is not None else 4000 - first
        if part.end_sample is not None:  # the last block it measures ends in its post-roll
            last_end = (first + count - 1) * step + 4 * step
            assert last_end <= part.end_sample + split.POSTROLL_FRAMES * FRAME
        measured += range(first, first + count)
    assert measured == list(range(4000))
