"""The model's shape: one frozen `ModelConfig`, saved beside every checkpoint as `config.json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lm.errors import LMError


class ConfigError(LMError):
    """A model configuration that cannot describe a working transformer."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # tokens the embedding and output projection cover
    d_model: int  # width of the residual stream
    n_layers: int  # pre-norm blocks stacked
    n_heads: int  # attention heads; d_model / n_heads must be an even head size (RoPE pairs)
    ffn_hidden: int  # SwiGLU hidden width (Llama uses about 8/3 * d_model)
    max_seq_len: int  # longest context the model is trained and sampled with
    rope_theta: float = 10000.0  # RoPE base: frequency of pair j is theta^(-2j/head_dim)
    norm_eps: float = 1e-5  # added under the RMSNorm square root so zero vectors stay finite
    tie_embeddings: bool = False  # reuse tok_emb.T as the output projection (no lm_head)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_hidden", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model config: d_model {self.d_model} is not divisible by n_heads {self.n_heads}; "
                "choose a head count that divides the width"
            )
        if self.head_dim % 2:
            raise ConfigError(
                f"model config: head size d_model/n_heads = {self.head_dim} is odd; RoPE rotates "
                "pairs of dimensions, so choose d_model and n_heads giving an even head size"
            )
        if not self.rope_theta > 0 or not self.norm_eps > 0:
            raise ConfigError("model config: rope_theta and norm_eps must be positive")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from `config.json` contents; unknown or missing keys are clear errors."""
        if not isinstance(data, dict):
            raise ConfigError("model config: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown field(s) {', '.join(unknown)}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ConfigError(f"model config: missing field(s) {', '.join(missing)}")
        values = dict(data)
        for name in ("rope_theta", "norm_eps"):
            if name in values and isinstance(values[name], int) and not isinstance(values[name], bool):
                values[name] = float(values[name])
        return cls(**values)
