"""Scene cuts with PySceneDetect's ContentDetector, in a killable child with progress and cancel."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InvalidRequestError, InvalidVideoError
from ..settings import Settings
from . import worker  # _media (PyAV, numpy, Pillow) is imported where the work starts
from .probe import VideoInfo

__all__ = ["Scene", "SceneResult", "detect_scenes", "DEFAULT_THRESHOLD", "SCENES_MEMORY_MB"]

#: PySceneDetect's own defaults (``scenedetect detect-content``).
DEFAULT_THRESHOLD = 27.0
DEFAULT_MIN_SCENE_LEN = 15
SCENES_MEMORY_MB = 4096


@dataclass(frozen=True)
class Scene:
    index: int
    start: float
    end: float
    length: float
    start_frame: int
    end_frame: int
    thumbnail: str | None = None


@dataclass(frozen=True)
class SceneResult:
    fps: float
    frames_read: int
    scenes: tuple[Scene, ...]

    def cut_list(self) -> list[list[float]]:
        """``[[start_seconds, end_seconds], ...]`` as the CLI prints it."""
        return [[s.start, s.end] for s in self.scenes]

    def to_dict(self) -> dict:
        return {"fps": self.fps, "frames_read": self.frames_read,
                "scenes": [asdict(s) for s in self.scenes]}


def _check(threshold: float, min_scene_len: int, downscale: int) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 1 <= threshold <= 255:
        raise InvalidRequestError(f"The scene threshold must be between 1 and 255, not {threshold!r}.",
                                  "PySceneDetect's default is 27; lower finds more cuts.")
    if not isinstance(min_scene_len, int) or not 1 <= min_scene_len <= 10_000:
        raise InvalidRequestError(f"The minimum scene length must be 1 to 10000 frames, not "
                                  f"{min_scene_len!r}.")
    if not isinstance(downscale, int) or not 0 <= downscale <= 16:
        raise InvalidRequestError(f"Downscale must be 0 (automatic) to 16, not {downscale!r}.")


def detect_scenes(path: str | Path, info: VideoInfo, settings: Settings, *,
                  threshold: float = DEFAULT_THRESHOLD, min_scene_len: int = DEFAULT_MIN_SCENE_LEN,
                  downscale: int = 0, thumb_dir: str | Path | None = None,
                  timeout: float | None = None) -> SceneResult:
    """Find the scene cuts of an already probed video.

    Progress goes to ``notify.progress``; the job's cancel token stops (kills) the work.

    Args:
        threshold: ContentDetector threshold (PySceneDetect default 27).
        downscale: 0 for PySceneDetect's automatic factor (as its CLI), else a fixed factor.
        thumb_dir: where to write one JPEG per scene (None: no thumbnails).
        timeout: seconds; default 60 s plus twice the video's duration.
    """
    _check(threshold, min_scene_len, downscale)
    if thumb_dir is not None:
        Path(thumb_dir).mkdir(parents=True, exist_ok=True)
    if timeout is None:
        timeout = 60 + 2 * (info.duration or 0)
    from . import _media

    raw = worker.run_child(_media.find_scenes, os.path.abspath(path), float(threshold),
                           int(min_scene_len), int(downscale),
                           str(thumb_dir) if thumb_dir is not None else None,
                           timeout=timeout, memory_limit_mb=SCENES_MEMORY_MB,
                           what="Finding scene cuts")
    if raw["frames_read"] <= 0:
        raise InvalidVideoError(f"No frames of {info.file_name} could be read for scene detection.")
    scenes = tuple(Scene(index=i + 1, start=r["start"], end=r["end"], length=r["length"],
                         start_frame=r["start_frame"], end_frame=r["end_frame"],
                         thumbnail=r.get("thumbnail")) for i, r in enumerate(raw["scenes"]))
    return SceneResult(fps=raw["fps"], frames_read=raw["frames_read"], scenes=scenes)
