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
    n_heads: int  # query heads
    ffn_hidden: int  # SwiGLU hidden width (Llama uses about 8/3 * d_model)
    max_seq_len: int  # longest context the model is trained and sampled with
    rope_theta: float = 10000.0  # RoPE base: frequency of pair j is theta^(-2j/head_dim)
    norm_eps: float = 1e-5  # added under the RMSNorm square root so zero vectors stay finite
    tie_embeddings: bool = False  # reuse tok_emb.T as the output projection (no lm_head)
    # Grouped-query attention: key/value heads, each shared by n_heads / n_kv_heads query heads.
    # None means n_heads (plain multi-head attention).
    n_kv_heads: int | None = None
    # Width of one head; None means d_model // n_heads (which must then divide evenly). Must be
    # even: RoPE rotates pairs of dimensions.
    head_dim: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_hidden", "max_seq_len"):
            _check_positive(name, getattr(self, name))
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"model config: d_model {self.d_model} is not divisible by n_heads {self.n_heads}; "
                    "choose a head count that divides the width (or give head_dim)"
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        _check_positive("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ConfigError(
                f"model config: head size {self.head_dim} is odd; RoPE rotates pairs of dimensions, "
                "so choose d_model and n_heads (or head_dim) giving an even head size"
            )
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        _check_positive("n_kv_heads", self.n_kv_heads)
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model config: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}; "
                "each key/value head serves the same number of query heads"
            )
        if not self.rope_theta > 0 or not self.norm_eps > 0:
            raise ConfigError("model config: rope_theta and norm_eps must be positive")

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    def to_dict(self) -> dict[str, Any]:
        """The fields for `config.json`; n_kv_heads and head_dim only when they are not the
        defaults they resolve to, so a plain model's file reads as before."""
        data = dataclasses.asdict(self)
        if self.n_kv_heads == self.n_heads:
            del data["n_kv_heads"]
        if self.head_dim * self.n_heads == self.d_model:
            del data["head_dim"]
        return data

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


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
