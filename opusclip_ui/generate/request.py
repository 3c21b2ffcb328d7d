"""What the user asks for, checked before any heavy work, and the plan that follows from it.

``validate_request`` turns raw fields (from the UI, the API or the CLI) into a ``GenerateRequest`` or
raises ``InvalidRequestError`` naming the field and the bad value. ``make_plan`` maps the request onto
a model card: the quality level picks the card's preset (size, frames per pass, fps, steps, guidance),
and the duration becomes a frame count at the card's native fps.

Long requests: one pass of a model makes at most ``max_frames`` frames. A longer duration is made
as consecutive segments (``long_mode="segments"``, the default) or clamped to one pass
(``long_mode="clamp"``). Segments are independent passes with seeds ``seed, seed+1, ...`` and the
same prompt, joined end to end with a hard cut (no cross-fade, no frame is dropped or repeated), and
the last segment is trimmed to the exact frame count. Either way the user is told; the requested
duration is never changed silently.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .. import notify
from ..errors import InvalidRequestError

__all__ = ["GenerateRequest", "Plan", "validate_request", "make_plan", "QUALITIES",
           "PROMPT_MAX_CHARS", "MIN_DURATION_S", "MAX_DURATION_S", "lower_preset", "DEFAULT_PRESETS",
           "preset_for"]

QUALITIES = ("low", "medium", "high")
PROMPT_MAX_CHARS = 2000
NEGATIVE_MAX_CHARS = 2000
MIN_DURATION_S = 1.0
MAX_DURATION_S = 60.0
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_SEED = 2**32 - 1

#: Used when a card has no presets of its own (sizes fit Wan-family latents: multiples of 16).
DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    "low": {"width": 480, "height": 272, "frames": 33, "fps": 16, "steps": 20, "guidance": 5.0},
    "medium": {"width": 640, "height": 368, "frames": 49, "fps": 16, "steps": 30, "guidance": 5.0},
    "high": {"width": 832, "height": 480, "frames": 81, "fps": 16, "steps": 50, "guidance": 5.0},
}


@dataclass(frozen=True)
class GenerateRequest:
    """A checked request. Build it with ``validate_request``."""

    prompt: str
    duration_s: float
    quality: Literal["low", "medium", "high"]
    seed: int
    seed_was_random: bool
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    long_mode: Literal["segments", "clamp"] = "segments"
    prompt_capped_from: int | None = None  # original length when the prompt was capped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(name: str, value: Any, *, integer: bool = False) -> float | int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InvalidRequestError(f"`{name}` must be a number, not {value!r}.")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"`{name}` must be a number, not {str(value)[:40]!r}.") from None
    if math.isnan(num) or math.isinf(num):
        raise InvalidRequestError(f"`{name}` must be a finite number, not {num}.")
    if integer:
        if num != int(num):
            raise InvalidRequestError(f"`{name}` must be a whole number, not {num:g}.")
        return int(num)
    return num


def validate_request(prompt: Any, duration_s: Any = 4, quality: Any = "medium", seed: Any = None,
                     negative_prompt: Any = None, steps: Any = None, guidance: Any = None,
                     long_mode: Any = "segments") -> GenerateRequest:
    """Check every field and return a ``GenerateRequest``.

    The prompt is trimmed; a prompt longer than ``PROMPT_MAX_CHARS`` is cut there with a warning.
    A missing seed becomes a random one (reported in the result and the sidecar).

    Raises:
        InvalidRequestError: naming the field and its bad value.
    """
    if prompt is None or not isinstance(prompt, str):
        raise InvalidRequestError("The prompt is missing.", "Describe the video you want.")
    text = prompt.replace("\x00", "").strip()
    if not text:
        raise InvalidRequestError("The prompt is empty (or only spaces).",
                                  "Describe the video you want, e.g. 'a red kite over the sea'.")
    capped_from = None
    if len(text) > PROMPT_MAX_CHARS:
        capped_from = len(text)
        text = text[:PROMPT_MAX_CHARS].rstrip()
        notify.warn(f"The prompt was {capped_from:,} characters long; only the first "
                    f"{PROMPT_MAX_CHARS:,} are used.")

    dur = _number("duration", duration_s)
    if dur is None:
        raise InvalidRequestError("`duration` is missing.", "Pick 1 to 60 seconds.")
    if not MIN_DURATION_S <= dur <= MAX_DURATION_S:
        raise InvalidRequestError(
            f"`duration` must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds, not {dur:g}.",
            "Pick 1 to 60 seconds.")

    q = quality.strip().lower() if isinstance(quality, str) else quality
    if q not in QUALITIES:
        raise InvalidRequestError(f"`quality` must be one of {', '.join(QUALITIES)}, not {str(quality)[:40]!r}.")

    s = _number("seed", seed, integer=True)
    random_seed = s is None
    if s is None:
        s = secrets.randbelow(MAX_SEED + 1)
    elif not 0 <= s <= MAX_SEED:
        raise InvalidRequestError(f"`seed` must be between 0 and {MAX_SEED}, not {s}.",
                                  "Leave it empty for a random seed.")

    neg = "" if negative_prompt is None else negative_prompt
    if not isinstance(neg, str):
        raise InvalidRequestError(f"`negative_prompt` must be text, not {type(neg).__name__}.")
    neg = neg.replace("\x00", "").strip()
    if len(neg) > NEGATIVE_MAX_CHARS:
        notify.warn(f"The negative prompt was {len(neg):,} characters long; only the first "
                    f"{NEGATIVE_MAX_CHARS:,} are used.")
        neg = neg[:NEGATIVE_MAX_CHARS].rstrip()

    st = _number("steps", steps, integer=True)
    if st is not None and not 1 <= st <= MAX_STEPS:
        raise InvalidRequestError(f"`steps` must be between 1 and {MAX_STEPS}, not {st}.",
                                  "Leave it empty to use the quality preset's steps.")
    g = _number("guidance", guidance)
    if g is not None and not 0 <= g <= MAX_GUIDANCE:
        raise InvalidRequestError(f"`guidance` must be between 0 and {MAX_GUIDANCE:g}, not {g:g}.",
                                  "Leave it empty to use the quality preset's guidance.")
    if long_mode not in ("segments", "clamp"):
        raise InvalidRequestError(f"`long_mode` must be 'segments' or 'clamp', not {str(long_mode)[:40]!r}.")
    return GenerateRequest(prompt=text, duration_s=float(dur), quality=q, seed=int(s),
                           seed_was_random=random_seed, negative_prompt=neg, steps=st, guidance=g,
                           long_mode=long_mode, prompt_capped_from=capped_from)


# --- the plan ---------------------------------------------------------------------------------

def _field(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def preset_for(card: Any, quality: str) -> dict[str, Any]:
    """The card's preset for ``quality`` as a plain dict (the defaults when the card has none)."""
    presets = _field(card, "presets") or {}
    p = presets.get(quality) if isinstance(presets, dict) else None
    if p is None:
        return dict(DEFAULT_PRESETS[quality])
    if hasattr(p, "model_dump"):
        p = p.model_dump()
    return {k: p[k] for k in ("width", "height", "frames", "fps", "steps", "guidance")}


def lower_preset(quality: str) -> str | None:
    i = QUALITIES.index(quality)
    return QUALITIES[i - 1] if i > 0 else None


@dataclass
class Plan:
    """The settings a run uses: derived from the request and the card, changed only by the ladder."""

    quality: str
    width: int
    height: int
    fps: float
    steps: int
    guidance: float
    frames_total: int         # frames in the final video
    frames_per_pass: int      # frames one denoising pass makes (the model's native form, e.g. 4k+1)
    segments: list[int] = field(default_factory=list)  # frames kept from each pass
    duration_used_s: float = 0.0
    temporal_factor: int = 4  # a pass makes 1 + k * temporal_factor frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _native_frames(n: int, factor: int) -> int:
    """The smallest pass length >= n that the model can make (``1 + k*factor``)."""
    if factor <= 1:
        return max(1, n)
    k = max(0, math.ceil((n - 1) / factor))
    return 1 + k * factor


def _pass_cap(limit: int, factor: int) -> int:
    """The largest pass length <= limit that the model can make."""
    if factor <= 1:
        return max(1, limit)
    return 1 + max(0, (limit - 1) // factor) * factor


def split_segments(frames_total: int, frames_per_pass: int) -> list[int]:
    n = max(1, math.ceil(frames_total / frames_per_pass))
    segs = [frames_per_pass] * (n - 1)
    segs.append(frames_total - frames_per_pass * (n - 1))
    return segs


def make_plan(request: GenerateRequest, card: Any, *, quality: str | None = None,
              temporal_factor: int = 4, warn: bool = True) -> Plan:
    """Map ``request`` onto ``card`` (a ``ModelCard`` or a dict with the same fields).

    Args:
        quality: overrides the request's quality (the ladder's lower-quality rung uses this).
        temporal_factor: the model makes ``1 + k*temporal_factor`` frames per pass (4 for Wan).
        warn: send the duration warnings (off when the ladder re-plans).
    """
    q = quality or request.quality
    p = preset_for(card, q)
    fps = float(p.get("fps") or _field(card, "native_fps") or 16)
    max_frames = int(_field(card, "max_frames") or p["frames"])
    per_pass = _pass_cap(min(int(p["frames"]), max_frames), temporal_factor)
    wanted = max(1, round(request.duration_s * fps))
    if wanted > per_pass and request.long_mode == "clamp":
        total = per_pass
        if warn:
            notify.warn(f"At {q} quality this model makes at most {per_pass} frames "
                        f"({per_pass / fps:.1f} s at {fps:g} fps) in one pass; the video is clamped "
                        f"to {per_pass / fps:.1f} s instead of {request.duration_s:g} s.")
    else:
        total = wanted
    per_pass = min(per_pass, _native_frames(total, temporal_factor))
    segs = split_segments(total, per_pass)
    if warn and len(segs) > 1:
        notify.warn(f"{request.duration_s:g} s is longer than one pass of this model "
                    f"({per_pass / fps:.1f} s at {q} quality); it is made as {len(segs)} consecutive "
                    "segments joined with hard cuts.")
    used = total / fps
    if warn and total == wanted and abs(used - request.duration_s) > 1e-6:
        notify.warn(f"{request.duration_s:g} s at {fps:g} fps is {request.duration_s * fps:.1f} frames; "
                    f"the video has {total} frames ({used:.3f} s).")
    steps = int(request.steps or p["steps"])
    guidance = float(request.guidance if request.guidance is not None else p["guidance"])
    return Plan(quality=q, width=int(p["width"]), height=int(p["height"]), fps=fps, steps=steps,
                guidance=guidance, frames_total=total, frames_per_pass=per_pass, segments=segs,
                duration_used_s=used, temporal_factor=temporal_factor)
