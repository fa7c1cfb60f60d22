"""The NumPy model against an independent PyTorch implementation of the same contract.

Same weights, float64 on both sides: logits, loss, every gradient, and a 10-step training
trajectory (clipping, cosine schedule, AdamW) must agree. Skipped when torch, an optional peer,
is not installed.
"""

import numpy as np
import pytest

from lm.config import ModelConfig
from lm.model import Transformer
from lm.optim import AdamW, clip_grad_norm, cosine_lr

torch = pytest.importorskip("torch", reason="torch is an optional peer; not installed here")
F = torch.nn.functional

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, ffn_hidden=48, max_seq_len=16)


def torch_loss(P: dict, ids, targets, cfg: ModelConfig):
    """The ARCHITECTURE.md block math written directly in torch (y = x @ W, W [in, out])."""
    hd = cfg.head_dim
    T = ids.shape[1]
    freqs = cfg.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def norm(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + cfg.norm_eps) * w

    x = P["tok_emb"][ids]
    B = ids.shape[0]
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        h = norm(x, P[p + "attn_norm"])
        q, k, v = ((h @ P[p + n]).view(B, T, cfg.n_heads, hd).transpose(1, 2) for n in ("wq", "wk", "wv"))
        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + y.transpose(1, 2).reshape(B, T, cfg.d_model) @ P[p + "wo"]
        h = norm(x, P[p + "ffn_norm"])
        x = x + (F.silu(h @ P[p + "w1"]) * (h @ P[p + "w3"])) @ P[p + "w2"]
    head = P["tok_emb"].T if cfg.tie_embeddings else P["lm_head"]
    logits = norm(x, P["norm"]) @ head
    return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1)), logits


def _pair(cfg, seed=0):
    model = Transformer(cfg, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for p in model.params.values():  # larger than the init so differences would show
        p[...] = rng.normal(1.0 if p.ndim == 1 else 0.0, 0.2, size=p.shape)
    P = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    return model, P


@pytest.mark.parametrize("tied", [False, True])
def test_logits_loss_and_gradients_match_torch(tied):
    cfg = ModelConfig(**{**CFG.to_dict(), "tie_embeddings": tied})
    model, P = _pair(cfg)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 64, size=(3, 16)), rng.integers(0, 64, size=(3, 16))
    loss_t, logits_t = torch_loss(P, torch.tensor(ids), torch.tensor(targets), cfg)
    loss_t.backward()
    np.testing.assert_allclose(model.forward(ids), logits_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    loss, grads = model.loss_and_grads(ids, targets)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(g, P[name].grad.numpy(), rtol=1e-9, atol=1e-13, err_msg=name)


def test_ten_training_steps_follow_torch():
    model, P = _pair(CFG, seed=2)
    opt = AdamW(model.params, lr=3e-3, weight_decay=0.1)
    decay = [t for n, t in P.items() if t.dim() >= 2]
    no_decay = [t for n, t in P.items() if t.dim() < 2]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(3)
    ours, theirs = [], []
    for step in range(10):
        ids, targets = rng.integers(0, 64, size=(2, 16)), rng.integers(0, 64, size=(2, 16))
        lr = cosine_lr(step, 3, 10, 3e-3, 3e-4)
        loss, grads = model.loss_and_grads(ids, targets)
        clip_grad_norm(grads, 0.5)  # small, so clipping really happens
        opt.step(grads, lr=lr)
        ours.append(loss)
        topt.zero_grad()
        loss_t, _ = torch_loss(P, torch.tensor(ids), torch.tensor(targets), CFG)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 0.5)
        for group in topt.param_groups:
            group["lr"] = lr
        topt.step()
        theirs.append(loss_t.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    assert ours[-1] < ours[0]
    for name, p in model.params.items():
        np.testing.assert_allclose(p, P[name].detach().numpy(), rtol=1e-8, atol=1e-11, err_msg=name)
