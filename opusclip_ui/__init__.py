"""Video-OpusClip core: video intake, models, generation, guards and resources.

This package never imports gradio; ``components/`` is the only Gradio layer. Heavy libraries (torch,
diffusers, transformers, OpenCV) are imported lazily by the functions that need them.
"""
__version__ = "0.1.0"
