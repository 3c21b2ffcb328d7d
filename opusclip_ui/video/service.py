"""``InspectService``: the Inspect tab's and the CLI's one entry point into the video core.

Every job gets its own folder under ``<outputs>/inspect/<job id>/``, so sessions never see each
other's files. Nothing here imports gradio.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .. import notify
from ..errors import InvalidRequestError
from ..log import setup_logging
from ..settings import Settings
from .export import export_properties, export_scenes
from .fetch import download, is_url
from .preview import make_preview
from .probe import VideoInfo, load_video_file
from .scenes import DEFAULT_MIN_SCENE_LEN, DEFAULT_THRESHOLD, SceneResult, detect_scenes
from .thumbs import Thumb, make_thumbnails, strip_tolerance

__all__ = ["InspectService", "InspectResult", "DEFAULT_THUMBNAILS"]

_log = setup_logging("video.service")
DEFAULT_THUMBNAILS = 12
_JOB_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class InspectResult:
    job_id: str
    source: Path
    info: VideoInfo
    thumbnails: list[Thumb] = field(default_factory=list)
    preview: Path | None = None
    preview_transcoded: bool = False


class InspectService:
    """Validate, probe, thumbnail, preview, find scenes and export, one job folder per call."""

    def __init__(self, settings: Settings):
        self.settings = settings

    # --- job folders -----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.settings.outputs) / "inspect"

    def new_job(self) -> tuple[str, Path]:
        job = uuid.uuid4().hex
        folder = self.root / job
        folder.mkdir(parents=True, exist_ok=True)
        return job, folder

    def job_folder(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _JOB_RE.match(job_id):
            raise InvalidRequestError("This inspection is unknown or has expired.",
                                      "Inspect the video again.")
        folder = self.root / job_id
        if not folder.is_dir():
            raise InvalidRequestError("This inspection is unknown or has expired.",
                                      "Inspect the video again.")
        return folder

    # --- steps -----------------------------------------------------------------------------
    def fetch(self, source: str | Path, folder: Path) -> Path:
        """A local path as is, or a URL downloaded into ``folder`` first."""
        text = str(source).strip()
        if is_url(text):
            notify.progress(0.0, "downloading")
            return download(text, folder / "download", self.settings)
        return Path(text)

    def inspect(self, source: str | Path, thumbnails: int = DEFAULT_THUMBNAILS, *,
                preview: bool = True) -> InspectResult:
        """Probe ``source`` (a path or an http(s) URL), make thumbnails and a playable preview."""
        result = None
        for result in self.inspect_steps(source, thumbnails, preview=preview):
            pass
        return result

    def inspect_steps(self, source: str | Path, thumbnails: int = DEFAULT_THUMBNAILS, *,
                      preview: bool = True) -> Iterator[InspectResult]:
        """Like ``inspect``, yielding the growing result after each step, so a UI can show the
        properties (about 0.1 s) before the thumbnails and the preview are ready."""
        job, folder = self.new_job()
        path = self.fetch(source, folder)
        notify.progress(0.1, "reading the video")
        info = load_video_file(path, self.settings)
        result = InspectResult(job_id=job, source=path, info=info)
        yield result
        if thumbnails:
            notify.progress(0.3, "making thumbnails")
            # A frame within the first half of its slice is as good as the exact one for a strip,
            # and on long GOPs it is usually the keyframe itself: ~10x less decoding.
            result.thumbnails = make_thumbnails(path, info, thumbnails, folder / "thumbs",
                                                self.settings,
                                                tolerance=strip_tolerance(info.duration, thumbnails))
            yield result
        if preview:
            notify.progress(0.7, "preparing the preview")
            result.preview, result.preview_transcoded = make_preview(
                path, info, folder, timeout=max(60.0, 4 * (info.duration or 0)))
            if result.preview_transcoded:
                notify.warn("Browsers cannot play this file as it is, so the preview is an H.264 "
                            "copy; the properties describe the original.")
            yield result
        notify.progress(1.0, "done")

    def scenes(self, path: str | Path, info: VideoInfo, *, threshold: float = DEFAULT_THRESHOLD,
               min_scene_len: int = DEFAULT_MIN_SCENE_LEN, downscale: int = 0,
               thumbnails: bool = True, job_id: str | None = None) -> SceneResult:
        folder = self.job_folder(job_id) if job_id else self.new_job()[1]
        thumb_dir = folder / f"scenes_{uuid.uuid4().hex[:8]}" if thumbnails else None
        return detect_scenes(path, info, self.settings, threshold=threshold,
                             min_scene_len=min_scene_len, downscale=downscale, thumb_dir=thumb_dir)

    def export_properties(self, info: VideoInfo, fmt: str, job_id: str, *,
                          public: bool = True) -> Path:
        """Save the properties; ``public`` keeps only the file's name, not its server path."""
        stem = _stem(info.file_name)
        if public:
            info = dataclasses.replace(info, file_path=info.file_name)
        return export_properties(info, self.job_folder(job_id) / f"{stem}.properties.{fmt}", fmt)

    def export_scenes(self, result: SceneResult, info: VideoInfo, fmt: str, job_id: str) -> Path:
        stem = _stem(info.file_name)
        return export_scenes(result, self.job_folder(job_id) / f"{stem}.scenes.{fmt}", fmt)


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")[:60] or "video"
