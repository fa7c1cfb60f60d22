"""A small, trainable decoder transformer in NumPy, with its BPE tokenizer."""

from lm.tokenizer import BPETokenizer
from lm.generate import GenerationResult, SamplingSettings, generate, stream
from lm.sampling import sample_token
from lm.config import ModelConfig
from lm.model import Transformer
from lm.optim import AdamW, clip_grad_norm, cosine_lr
from lm.parallel import DataParallel
from lm.gradcheck import gradcheck
from lm.checkpoint import load, save
from lm.chat import apply_chat_template, render_chat


def __getattr__(name: str):
    # lm.export_hf / lm.export_gguf, imported on first use: `import lm` stays as fast as before.
    if name in ("export_hf", "export_gguf"):
        from lm import export

        return getattr(export, name)
    raise AttributeError(f"module 'lm' has no attribute {name!r}")
