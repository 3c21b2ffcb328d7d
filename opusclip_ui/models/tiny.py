"""A tiny Wan text-to-video pipeline with random weights, built locally and cached.

It has the real architecture (``WanTransformer3DModel``, ``AutoencoderKLWan``, a T5 encoder and a
tokenizer) at the sizes diffusers' own Wan tests use, so every code path of loading, denoising, VAE
decoding and encoding runs for real, offline, in about a second. The output is noise: the weights are
random. It backs the ``tiny-random-t2v`` model card, the tests and the benchmarks.

Nothing is downloaded: the tokenizer is trained here on a few words with the ``tokenizers`` library.
The pipeline is saved with safetensors into ``<cache_dir>/tiny-random-t2v-v<N>`` (built in a temp folder
beside it, then renamed, so a half-written folder is never loaded) and reused when present.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..log import setup_logging

__all__ = ["TINY_T2V_NAME", "TINY_T2V_VERSION", "ensure_tiny_t2v", "build_tiny_t2v"]

_log = setup_logging("models.tiny")

TINY_T2V_NAME = "tiny-random-t2v"
#: Bump when the architecture below changes, so old caches are not reused.
TINY_T2V_VERSION = 1
_SEED = 0
_lock = threading.Lock()

_WORDS = (
    "a cat dog bird fish horse car boat plane tree flower mountain river sea sky city street forest "
    "red green blue yellow white black small big fast slow running flying walking swimming dancing "
    "in on under over the with and of at sunset night day rain snow video of monkey negative blurry "
    "low quality"
).split()


def _build_tokenizer():
    """A word-level tokenizer trained on a few words; unknown words map to <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    tok.train_from_iterator([" ".join(_WORDS)], trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=512)


def build_tiny_t2v():
    """Build the tiny pipeline in memory (seeded, so two builds give the same weights)."""
    import torch
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _build_tokenizer()
    torch.manual_seed(_SEED)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(_SEED)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id))
    torch.manual_seed(_SEED)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                       vae=vae, scheduler=scheduler)


def ensure_tiny_t2v(cache_dir: str | os.PathLike) -> Path:
    """Return the folder of the tiny pipeline under ``cache_dir``, building it on first use.

    Load it with ``DiffusionPipeline.from_pretrained(path)``. Safe to call from several threads;
    a crash while building leaves only a temp folder, never a half-written pipeline.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / f"{TINY_T2V_NAME}-v{TINY_T2V_VERSION}"
    marker = final / "model_index.json"
    if marker.is_file():
        return final
    with _lock:
        if marker.is_file():
            return final
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_dir))
        try:
            _log.info("building the tiny random text-to-video pipeline in %s", final)
            build_tiny_t2v().save_pretrained(tmp, safe_serialization=True)
            try:
                os.replace(tmp, final)
            except OSError:
                # Another process won the race and renamed its folder first: use theirs.
                if not marker.is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
