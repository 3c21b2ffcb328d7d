"""Generate: a prompt becomes a verified, playable MP4 with a JSON sidecar.

``validate_request`` checks the user's fields, ``generate`` runs a loaded diffusers text-to-video
pipeline with progress, cancel and the out-of-memory ladder, ``encode_mp4`` writes the video.
Nothing here imports gradio; the tab lives in ``components/generate_tab.py``.
"""
from .request import GenerateRequest, Plan, make_plan, validate_request
from .run import GenerateResult, LocalPipelineSource, PipelineSource, generate

__all__ = ["GenerateRequest", "Plan", "make_plan", "validate_request", "GenerateResult",
           "LocalPipelineSource", "PipelineSource", "generate"]
