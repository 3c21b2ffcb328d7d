"""Models: cards (``cards``), weights on disk and on the Hub (``weights``), the fallback-ladder loader
(``loader``), the manager that holds loaded models (``manager``), hardware fit (``fit``), test
inference (``inference``) and the tiny random pipeline (``tiny``).

Importing this package is cheap: torch, diffusers and transformers are imported by the functions
that need them.
"""
