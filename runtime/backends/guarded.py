"""One model call inside the run's budgets: the sequence PROMPT_AGENT and ESTIMATE_COST share.

Count the prompt's tokens with the backend, reserve the call (refused before anything is sent
when API_CALLS or TOKENS would be exceeded), cap its completion by what its prompt leaves of
TOKENS (`max_tokens` sent to a server, the local model's limit), bound the call's timeout by
what is left of EXECUTION_TIME, call the backend, then record the tokens it reports.
"""

from __future__ import annotations

from runtime.backends.base import BackendError, Completion, GenerationSettings, ModelBackend
from runtime.budget import Budgets


def prompt_tokens(backend: ModelBackend, prompt: str, settings: GenerationSettings) -> int:
    """What the budgets charge for a prompt before it is sent: its tokens plus the persona's, or
    the count of a backend that knows how its prompt is built (`count_prompt_tokens`: exact for
    the local backend, whose chat template adds tokens of its own; an upper bound for an HTTP
    server, whose template it cannot see). The call's cap is what this leaves of TOKENS."""
    exact = getattr(backend, "count_prompt_tokens", None)
    if callable(exact):
        return exact(prompt, settings)
    persona = backend.count_tokens(settings.persona) if settings.persona else 0
    return backend.count_tokens(prompt) + persona


def generate_within_budget(
    backend: ModelBackend, prompt: str, settings: GenerationSettings, budgets: Budgets
) -> Completion:
    """`backend.generate(prompt, settings)` charged to `budgets`.

    Raises `BudgetExceeded` before sending when the call does not fit, `BackendError` when the
    call fails (its reserved tokens are given back; the attempt still counts as an API call),
    and `BudgetExceeded` after the call when the tokens the backend reports overshoot TOKENS.
    """
    reservation = budgets.reserve_call(prompt_tokens(backend, prompt, settings), settings.max_tokens)
    try:
        timeout = budgets.bound_timeout(settings.timeout)
        completion = backend.generate(
            prompt, settings.replace(timeout=timeout, max_tokens=reservation.max_tokens))
    except BaseException:
        # Whatever stopped the call (a backend error, Ctrl-C, the time budget), it reported no
        # usage, so its reservation must not keep blocking later calls.
        budgets.release(reservation)
        raise
    if not isinstance(completion, Completion):
        budgets.release(reservation)
        raise BackendError(f"model backend {backend.name!r} returned no completion")
    budgets.record(reservation, completion.prompt_tokens, completion.completion_tokens)
    return completion
