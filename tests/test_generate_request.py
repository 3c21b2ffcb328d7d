"""Generate requests: every bad value is refused with its name before anything heavy starts, and the
plan maps duration/quality onto the card without changing the duration silently."""
from __future__ import annotations

import math

import pytest

from opusclip_ui import notify
from opusclip_ui.errors import InvalidRequestError
from opusclip_ui.generate.request import (MAX_SEED, PROMPT_MAX_CHARS, make_plan, split_segments,
                                          validate_request)

TINY = {
    "name": "tiny", "native_fps": 16, "max_frames": 17,
    "presets": {"low": dict(width=32, height=32, frames=5, fps=8, steps=2, guidance=1.0),
                "medium": dict(width=48, height=48, frames=9, fps=16, steps=3, guidance=1.0),
                "high": dict(width=64, height=64, frames=17, fps=16, steps=4, guidance=1.0)},
}


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t ", None, 42])
def test_empty_or_missing_prompt_is_refused(prompt):
    with pytest.raises(InvalidRequestError) as ei:
        validate_request(prompt, 2, "low", 1)
    assert "prompt" in ei.value.user_message.lower()


def test_prompt_is_trimmed():
    assert validate_request("  a cat  \n", 2, "low", 1).prompt == "a cat"


def test_100kb_prompt_is_capped_with_a_warning():
    with notify.collect_warnings() as warned:
        req = validate_request("word " * 20_000, 2, "low", 1)
    assert len(req.prompt) <= PROMPT_MAX_CHARS
    assert req.prompt_capped_from == len(("word " * 20_000).strip())
    assert any("only the first" in w for w in warned)


@pytest.mark.parametrize("duration", [0, -1, 61, 60.5, float("nan"), float("inf"), "abc", None, True])
def test_bad_durations_are_refused_naming_the_value(duration):
    with pytest.raises(InvalidRequestError) as ei:
        validate_request("a cat", duration, "low", 1)
    msg = ei.value.user_message
    assert "duration" in msg


@pytest.mark.parametrize("duration", [1, 60, "2.5", 30.0])
def test_good_durations_pass(duration):
    assert validate_request("a cat", duration, "low", 1).duration_s == float(duration)


@pytest.mark.parametrize("quality", ["ultra", "", None, 3, "LOWEST"])
def test_unknown_quality_is_refused(quality):
    with pytest.raises(InvalidRequestError) as ei:
        validate_request("a cat", 2, quality, 1)
    assert "quality" in ei.value.user_message


def test_quality_is_case_insensitive():
    assert validate_request("a cat", 2, " High ", 1).quality == "high"


def test_missing_seed_is_random_and_reported():
    seeds = {validate_request("a cat", 2, "low", None).seed for _ in range(5)}
    req = validate_request("a cat", 2, "low", "")
    assert req.seed_was_random and 0 <= req.seed <= MAX_SEED
    assert len(seeds) > 1


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 1.5, "x"])
def test_bad_seed_is_refused(seed):
    with pytest.raises(InvalidRequestError) as ei:
        validate_request("a cat", 2, "low", seed)
    assert "seed" in ei.value.user_message


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", 1000), ("steps", 2.5),
                                         ("guidance", -1), ("guidance", 100), ("guidance", "nan")])
def test_bad_optional_fields_are_refused(field, value):
    with pytest.raises(InvalidRequestError) as ei:
        validate_request("a cat", 2, "low", 1, **{field: value})
    assert field in ei.value.user_message


def test_bad_long_mode_is_refused():
    with pytest.raises(InvalidRequestError):
        validate_request("a cat", 2, "low", 1, long_mode="loop")


def test_plan_uses_card_preset_and_overrides():
    req = validate_request("a cat", 1, "high", 1, negative_prompt=" blur ", steps=7, guidance=3)
    plan = make_plan(req, TINY)
    assert (plan.width, plan.height, plan.fps) == (64, 64, 16)
    assert plan.steps == 7 and plan.guidance == 3.0
    assert plan.frames_total == 16 and plan.segments == [16] and plan.frames_per_pass == 17
    assert req.negative_prompt == "blur"


def test_long_duration_becomes_segments_with_a_warning():
    req = validate_request("a cat", 3, "medium", 1)
    with notify.collect_warnings() as warned:
        plan = make_plan(req, TINY)
    assert plan.frames_total == 48
    assert sum(plan.segments) == 48 and max(plan.segments) <= plan.frames_per_pass == 9
    assert len(plan.segments) == math.ceil(48 / 9)
    assert any("consecutive segments" in w for w in warned)
    assert plan.duration_used_s == pytest.approx(3.0)


def test_clamp_mode_names_the_maximum():
    req = validate_request("a cat", 3, "medium", 1, long_mode="clamp")
    with notify.collect_warnings() as warned:
        plan = make_plan(req, TINY)
    assert plan.frames_total == 9 and plan.segments == [9]
    assert any("at most 9 frames" in w and "clamped" in w for w in warned)


def test_duration_rounding_to_frames_is_reported():
    req = validate_request("a cat", 1.03, "low", 1)
    with notify.collect_warnings() as warned:
        plan = make_plan(req, TINY)
    assert plan.frames_total == 8
    assert any("8 frames" in w for w in warned)


def test_pass_lengths_are_native_for_wan():
    plan = make_plan(validate_request("a cat", 1, "high", 1), {"presets": {"high": dict(
        width=64, height=64, frames=20, fps=16, steps=1, guidance=1)}, "max_frames": 20})
    assert (plan.frames_per_pass - 1) % 4 == 0 and plan.frames_per_pass == 17


def test_split_segments():
    assert split_segments(10, 4) == [4, 4, 2]
    assert split_segments(8, 9) == [8]
