"""The NumPy model against an independent PyTorch implementation of the same contract.

Same weights, float64 on both sides: logits, loss, every gradient (untied and tied embeddings),
and a 30-step training trajectory (gradient clipping, warmup + cosine schedule, AdamW) must
agree, within the tolerances of `reference_cases.TOLERANCES`.

Two ways in. The fixture tests run everywhere: they compare `lm` with what torch computed when
`fixtures/make_torch_reference.py` was last run (its output is committed; CI has no torch). The
live tests run where torch is installed: they compute the reference now, and check that the
committed fixtures are still what the script makes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference_cases as cases
from reference_cases import assert_close, tol

from lm.config import ModelConfig
from lm.model import Transformer
from lm.optim import AdamW, clip_grad_norm, cosine_lr

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def _config(case: cases.ModelCase, **changes) -> ModelConfig:
    missing = [name for name in case.requires if name not in _CONFIG_FIELDS]
    if missing:
        pytest.skip(f"case {case.name!r} needs ModelConfig.{', '.join(missing)}, which lm does not have yet")
    return ModelConfig(**{**case.config, **changes})


def _model(cfg: ModelConfig, params: dict[str, np.ndarray]) -> Transformer:
    model = Transformer(cfg, dtype=np.float64)
    assert {k: v.shape for k, v in model.params.items()} == {k: v.shape for k, v in params.items()}, (
        "lm's parameter names or shapes differ from the contract's"
    )
    for name, p in model.params.items():
        p[...] = params[name]
    return model


def check_pass(cfg: ModelConfig, params, ids, targets, ref: dict[str, np.ndarray], what: str) -> None:
    """lm's logits, loss and gradients on one batch against a reference (`logits`, `loss`,
    `grads`: a dict of name -> array)."""
    model = _model(cfg, params)
    assert_close(f"{what} logits", model.forward(ids), ref["logits"], **tol("logits"))
    loss, grads = model.loss_and_grads(ids, targets)
    assert_close(f"{what} loss", loss, ref["loss"], **tol("loss"))
    assert list(grads) == list(ref["grads"])
    for name, g in grads.items():
        assert_close(f"{what} gradient of {name}", g, ref["grads"][name], **tol("grad"))


def run_training(case: cases.ModelCase, cfg: ModelConfig, params, batches):
    """lm's training run for a case: (learning rates, losses, final parameters)."""
    model = _model(cfg, params)
    opt = AdamW(model.params, lr=case.max_lr, betas=case.betas, eps=case.eps, weight_decay=case.weight_decay)
    lrs, losses = [], []
    for step, (ids, targets) in enumerate(batches):
        lr = cosine_lr(step, case.warmup, case.steps, case.max_lr, case.min_lr)
        loss, grads = model.loss_and_grads(ids, targets)
        clip_grad_norm(grads, case.clip)
        opt.step(grads, lr=lr)
        lrs.append(lr)
        losses.append(loss)
    return lrs, losses, model.params


def check_training(case, cfg, params, batches, ref_lrs, ref_losses, ref_params, what: str) -> None:
    lrs, losses, final = run_training(case, cfg, params, batches)
    assert_close(f"{what} learning rates", lrs, ref_lrs, **tol("lr"))
    assert_close(f"{what} losses", losses, ref_losses, **tol("train.loss"))
    assert losses[-1] < losses[0], "the run should learn; a fixture where it does not checks little"
    for name, p in final.items():
        assert_close(f"{what} final {name}", p, ref_params[name], **tol("train.param"))


def _fixture(case: cases.ModelCase) -> dict:
    f = cases.load(case.path, case.settings())
    layout, tied_layout = f["layout"], f["tied.layout"]
    return {
        "params": cases.unflatten(f["params"], layout),
        "ids": f["ids"].astype(np.int64), "targets": f["targets"].astype(np.int64),
        "untied": {"logits": f["logits"], "loss": f["loss"], "grads": cases.unflatten(f["grads"], layout)},
        "tied": {"logits": f["tied.logits"], "loss": f["tied.loss"],
                 "grads": cases.unflatten(f["tied.grads"], tied_layout)},
        "batches": list(zip(f["train.ids"].astype(np.int64), f["train.targets"].astype(np.int64))),
        "lrs": f["train.lr"], "losses": f["train.loss"],
        "final": cases.unflatten(f["train.params"], layout),
    }


CASES = [pytest.param(c, id=c.name) for c in cases.MODEL_CASES]


# -- against the committed fixtures (every run) ---------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_logits_loss_and_gradients_match_the_torch_fixture(case, tied):
    cfg = _config(case, tie_embeddings=tied)
    f = _fixture(case)
    params = {k: v for k, v in f["params"].items() if not (tied and k == "lm_head")}
    check_pass(cfg, params, f["ids"], f["targets"], f["tied" if tied else "untied"], f"{case.name} fixture")


@pytest.mark.parametrize("case", CASES)
def test_training_trajectory_matches_the_torch_fixture(case):
    cfg = _config(case)
    f = _fixture(case)
    assert len(f["batches"]) == case.steps == 30
    check_training(case, cfg, f["params"], f["batches"], f["lrs"], f["losses"], f["final"], f"{case.name} fixture")


def test_the_fixture_comparison_fails_on_a_small_error():
    # The check must be able to fail: one gradient element off by a relative 1e-7, one logit by
    # 1e-9, and one final parameter by 1e-6 are each caught, and the message names the size.
    case = cases.MODEL_CASES[0]
    cfg = _config(case)
    f = _fixture(case)
    wrong = {**f["untied"], "grads": {k: v.copy() for k, v in f["untied"]["grads"].items()}}
    wrong["grads"]["layers.1.wk"][2, 3] *= 1 + 1e-7
    with pytest.raises(AssertionError, match=r"gradient of layers\.1\.wk: max abs diff .* worst at \(2, 3\)"):
        check_pass(cfg, f["params"], f["ids"], f["targets"], wrong, "perturbed")
    wrong = {**f["untied"], "logits": f["untied"]["logits"] * (1 + 1e-9)}
    with pytest.raises(AssertionError, match="perturbed logits: max abs diff"):
        check_pass(cfg, f["params"], f["ids"], f["targets"], wrong, "perturbed")
    final = {k: v.copy() for k, v in f["final"].items()}
    final["norm"][0] *= 1 + 1e-6
    with pytest.raises(AssertionError, match="perturbed final norm"):
        check_training(case, cfg, f["params"], f["batches"], f["lrs"], f["losses"], final, "perturbed")


# -- against torch itself (where it is installed) -------------------------------------------------


@pytest.fixture(scope="module")
def ref():
    pytest.importorskip("torch", reason="torch is an optional peer; not installed here")
    import torch_reference

    return torch_reference


def _torch_pass(ref, cfg: dict, params, ids, targets) -> dict:
    P = ref.to_torch(params)
    loss, logits = ref.loss_and_logits(P, ids, targets, cfg)
    loss.backward()
    return {"logits": logits.detach().numpy(), "loss": loss.item(),
            "grads": {k: t.grad.numpy() for k, t in P.items()}}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_logits_loss_and_gradients_match_torch(ref, case, tied):
    cfg = _config(case, tie_embeddings=tied)
    raw = dict(case.config, tie_embeddings=tied)
    params = ref.draw_params(raw, seed=7)
    rng = np.random.default_rng(8)
    ids, targets = rng.integers(0, cfg.vocab_size, size=(3, 12)), rng.integers(0, cfg.vocab_size, size=(3, 12))
    check_pass(cfg, params, ids, targets, _torch_pass(ref, raw, params, ids, targets), f"{case.name} live")


@pytest.mark.parametrize("case", CASES)
def test_training_steps_follow_torch(ref, case):
    cfg = _config(case)
    params = ref.draw_params(case.config, seed=2)
    rng = np.random.default_rng(3)
    batches = list(zip(*cases.training_batches(case, rng)))
    lrs = [ref.cosine_lr(s, case.warmup, case.steps, case.max_lr, case.min_lr) for s in range(case.steps)]
    P = ref.to_torch(params)
    losses = ref.train(P, batches, lrs, case.config, clip=case.clip, weight_decay=case.weight_decay,
                       betas=case.betas, eps=case.eps)
    final = {k: t.detach().numpy() for k, t in P.items()}
    check_training(case, cfg, params, batches, lrs, losses, final, f"{case.name} live")


def test_the_committed_fixtures_are_what_the_script_makes(ref):
    # A fixture edited by hand, or a script changed without rerunning it, shows here.
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_torch_reference", cases.FIXTURES / "make_torch_reference.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    found = [d for path, settings, arrays in script.all_fixtures() for d in script.differences(path, settings, arrays)]
    assert not found, "\n".join(found) + f"\nregenerate with `python {cases.SCRIPT}`"
