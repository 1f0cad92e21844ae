"""PPO with a KL penalty, the way InstructGPT trained its policies — in one file, top to bottom.

Sources for each detail (named again where it is used):

* [Z19]  Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"
         (lm-human-preferences): per-token reward ``r_t = −β·kl_t`` plus the score at the last
         token; adaptive KL controller with target 6 nats and horizon 10,000 episodes.
* [O22]  Ouyang et al. 2022, InstructGPT: the KL penalty from the SFT model, β = 0.02; the value
         function initialised from the reward model.
* [H24]  Huang et al. 2024, "The N Implementation Details of RLHF with PPO": temperature-scaled
         log-probs, missing-EOS penalty, whitened advantages, clipped value loss, GAE with γ = 1.
* [S17]  Schulman et al. 2017, PPO: the clipped surrogate objective.

One PPO step:

1. **Rollout** — the policy samples a response per prompt at temperature ``T``; the policy and the
   frozen reference score the sampled tokens with logits divided by ``T``; the reward model scores
   prompt + response; the value model predicts a value at every response token.
2. **Rewards** — ``kl_t`` per token (k1 by default, or k3) and the per-token reward
   ``r_t = −β·kl_t``, with the score added at the final response token (the ``<eos>``). Summed over
   the response this is the seed post's adjusted reward ``score − β·Σ_t kl_t``.
3. **Advantages** — GAE with ``γ = 1``, ``λ = 0.95``, whitened over the batch.
4. **Update** — several epochs over shuffled minibatches of the clipped policy loss and the
   clipped value loss.
5. **β** — fixed, or updated by the adaptive controller from the batch's KL.

Only the algorithm lives here. The preset's sizes come from :meth:`klcourse.config.Preset.ppo_sizes`,
the proxy score from :meth:`klcourse.world.World.score`, the phase timings from
:class:`klcourse.timing.Laps`, and a run is saved with :func:`klcourse.sweep.save_run`.

Device placement and data parallelism go through ``accelerate``: ``accelerate launch`` runs the
same code on several processes, each sampling its own prompts, with gradients averaged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from klcourse import gpt2
from klcourse.config import Preset
from klcourse.kl import check_estimator, k2
from klcourse.logprobs import entropy, gather_logprobs, per_token_kl, response_positions
from klcourse.lora import AdapterOff, with_lora
from klcourse.padding import padded_forward, position_ids
from klcourse.sampling import Rollout, sample
from klcourse.timing import Laps
from klcourse.world import MAX_RESPONSE_TOKENS
from klcourse.world.protocol import RLWorld

# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PPOConfig:
    """Every knob of a run. Defaults follow the sources in the module docstring.

    Taught in notebook 05.
    """

    beta: float = 0.05  # KL coefficient (initial value if adaptive)
    kl_estimator: str = "k1"  # in klcourse.kl.ESTIMATORS: "k1" (Z19, O22, TRL's RLOO), "k3", "k2" (biased)
    adaptive_kl: bool = False  # Z19's controller instead of a fixed β
    kl_target: float = 6.0  # Z19: target KL in nats per sequence
    kl_horizon: int = 10_000  # Z19: horizon in episodes
    temperature: float = 1.0  # sampling temperature; log-probs use logits / T [H24]
    missing_eos_penalty: float | None = None  # subtracted from the score if no <eos> [H24]
    gamma: float = 1.0  # discount [H24]
    lam: float = 0.95  # GAE λ [H24]
    clip_range: float = 0.2  # policy ratio clip ε [S17]
    clip_range_value: float = 0.2  # value clip [H24]
    vf_coef: float = 0.1  # value-loss weight
    whiten_advantages: bool = True  # [H24]
    lr: float = 1e-4  # with 2 epochs: the update size that did not spike (nb05 §7; 3e-4 × 4 did)
    max_grad_norm: float = 1.0
    batch_size: int = 64  # rollouts per PPO step (per process)
    mini_batch_size: int = 16
    ppo_epochs: int = 2
    steps: int = 40
    max_new_tokens: int = MAX_RESPONSE_TOKENS
    seed: int = 0
    samples_per_step: int = 3  # responses kept in the metrics table
    # LoRA adapters of this rank on the policy (peft), the base frozen; the reference is then the
    # same model with its adapter switched off, as TRL's trainers do given a peft model: no second copy
    lora_rank: int | None = None

    def __post_init__(self) -> None:
        check_estimator(self.kl_estimator)
        if self.beta < 0:
            raise ValueError(f"beta must be ≥ 0, got {self.beta}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError("batch_size must be a multiple of mini_batch_size")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be ≥ 1, got {self.lora_rank}")


def config_for(preset: Preset, **overrides) -> PPOConfig:
    """The preset's PPO sizes (:meth:`klcourse.config.Preset.ppo_sizes`) plus ``overrides``
    (the rest are :class:`PPOConfig`'s defaults).

    Taught in notebooks 04, 05 and 07.
    """
    return PPOConfig(**{**preset.ppo_sizes(), **overrides})


# ----------------------------------------------------------------------------- reward shaping


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards ``r_t = −β·kl_t``, plus the score at each response's last token [Z19].

    ``scores`` is ``[B]``, ``kl`` and ``mask`` are ``[B, R]``. The last token is the last position
    where ``mask`` is 1: the ``<eos>`` when the response ended, else the final sampled token. The
    sum over ``t`` is the adjusted reward ``score − β·Σ_t kl_t``.

    Taught in notebooks 04 and 05.
    """
    rewards = -beta * kl * mask
    last = mask.sum(1).long() - 1
    if (last < 0).any():
        raise ValueError("every response needs at least one token")
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards


def adjusted_reward(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """The seed post's ``adjusted_reward = score − β·Σ_t KL_t`` per response, ``[B]``.

    Taught in notebooks 04 and 05.
    """
    return scores - beta * (kl * mask).sum(1)


class AdaptiveKLController:
    """Z19's proportional controller: ``e = clip(KL/target − 1, −0.2, 0.2)``,
    ``β ← β·(1 + e·n/horizon)`` after a batch of ``n`` episodes with mean sequence KL ``KL``.

    Taught in notebook 05.
    """

    def __init__(self, beta: float, target: float, horizon: int):
        if beta <= 0 or target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs beta, target and horizon > 0")
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n_episodes: int) -> float:
        """Apply one update and return the new β."""
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_episodes / self.horizon
        return self.beta


# ----------------------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns ``(advantages, returns)``.

    ``δ_t = r_t + γ·V_{t+1} − V_t`` and ``A_t = δ_t + γλ·A_{t+1}``, with ``V`` and ``A`` zero after
    the last response token. ``returns = A + V`` are the value targets.

    Taught in notebook 05.
    """
    mask = mask.to(rewards.dtype)
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1.

    Taught in notebook 05.
    """
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / std`` over masked positions [H24]; 0 elsewhere.

    Taught in notebook 05.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """How much of the returns' variance the value predictions explain, over masked tokens:
    ``1 − Var[R − V] / Var[R]`` (CleanRL's diagnostic). 1 is a perfect value model, 0 one no better
    than a constant, negative one worse than a constant; ``nan`` when the returns do not vary.

    Taught in notebook 05.
    """
    m = mask.bool()
    r, v = returns[m].double(), values[m].double()
    var = r.var(unbiased=False)
    return float("nan") if var == 0 else (1.0 - (r - v).var(unbiased=False) / var).item()


# ----------------------------------------------------------------------------- losses


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate [S17]: ``max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))`` with ``ρ = π_new/π_old``.

    Returns ``(loss, clip_fraction)``, both averaged over masked tokens.

    Taught in notebook 05.
    """
    ratio = torch.exp(new_logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction


def value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped value loss [H24]: ``½·max((V − R)², (V_clip − R)²)``,
    with ``V_clip = V_old + clip(V − V_old, −c, c)``.

    Taught in notebook 05.
    """
    clipped = old_values + torch.clamp(new_values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.max((new_values - returns) ** 2, (clipped - returns) ** 2), mask)


# ----------------------------------------------------------------------------- models


class PolicyAndValue(nn.Module):
    """The trained pair: the policy (a causal LM) and a value model initialised from the reward
    model [O22]: the reward model's transformer and scalar head, read at every position.

    The head is rescaled so that the value model starts on the scale of the rewards it predicts.
    The rewards use the *normalised* score ``(r − μ)/σ`` (``normalisation = (μ, σ)``, see
    :attr:`klcourse.world.World.score_normalisation`), while the reward model's head outputs the raw
    ``r = w·h``; so the value head is ``V(h) = (w/σ)·h − μ/σ``, which read at a response's final
    token (the ``<eos>``) is exactly that response's normalised score. PPO reads ``V_t`` one position
    earlier (the state before token ``t`` is chosen, :func:`klcourse.logprobs.response_positions`), so
    its values start as the reward model's normalised reading of the unfinished text: in the units of
    the returns, which are the final score minus the KL penalty. A head on the raw scale would
    predict ``μ + σ·score`` instead, shifted by μ and stretched by σ, and PPO's first updates would
    spend themselves (and the value clip) undoing that.

    A world whose reward model reads other tokens than the policy's (a hub world with, say, a BERT
    reward model) passes ``reward_model=None``: the value model is then a copy of the policy's own
    transformer with a zero head, which predicts 0, the normalised score's mean on the reference's
    samples (TRL's PPOTrainer took any value model it was given; a fresh head is the usual choice).

    One module, so that ``accelerate`` wraps one thing and every parameter gets a gradient.

    Taught in notebook 05.
    """

    def __init__(
        self,
        policy: PreTrainedModel,
        reward_model: PreTrainedModel | None,
        normalisation: tuple[float, float],
    ):
        super().__init__()
        mean, std = normalisation
        if not std > 0:
            raise ValueError(f"the score's standard deviation must be positive, got {std}")
        self.policy = policy
        if reward_model is None:
            self.value_backbone = copy.deepcopy(policy.base_model)
            width = policy.get_output_embeddings().in_features
            self.value_head = nn.Linear(width, 1, bias=True).to(next(policy.parameters()).device)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
            return
        value = copy.deepcopy(reward_model)
        self.value_backbone = value.base_model
        raw_head = value.score
        self.value_head = nn.Linear(raw_head.in_features, 1, bias=True).to(raw_head.weight.device)
        with torch.no_grad():
            self.value_head.weight.copy_(raw_head.weight / std)
            raw_bias = raw_head.bias if raw_head.bias is not None else torch.zeros(1)
            self.value_head.bias.copy_((raw_bias.to(raw_head.weight.device) - mean) / std)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, L, V]`` of the policy and values ``[B, L]`` at every position, both with
        positions from the attention mask (:func:`klcourse.padding.position_ids`)."""
        positions = position_ids(attention_mask)
        logits = gpt2.forward(self.policy, input_ids, attention_mask, positions).logits
        hidden = gpt2.forward(self.value_backbone, input_ids, attention_mask, positions).last_hidden_state
        return logits, self.value_head(hidden).squeeze(-1)


@torch.no_grad()
def rollout_logprobs(
    model: PolicyAndValue,
    reference: PreTrainedModel,
    rollout: Rollout,
    temperature: float,
    laps: Laps | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What PPO stores of a fresh rollout, ``[B, R]`` each and 0 at padding:
    ``log π_old(y_t)`` and ``V_old(t)`` of the policy-and-value model that sampled, and
    ``log π_ref(y_t)`` of the frozen reference scoring the same tokens; both log-probs at the
    sampling temperature ``T`` [H24] and with positions from the attention mask, so that
    ``log π_old`` is the log-probability each token was sampled with. ``laps`` (if given) records
    the ``policy`` and ``reference`` phases.

    Taught in notebook 05.
    """
    laps = laps or Laps()
    device = next(model.parameters()).device
    mask = rollout.response_mask.to(device).float()
    ids, attn = rollout.input_ids.to(device), rollout.attention_mask.to(device)
    tokens = rollout.response_ids.to(device)
    logits, values = model(ids, attn)
    old_logprobs = gather_logprobs(response_positions(logits, rollout), tokens, temperature) * mask
    old_values = response_positions(values, rollout) * mask
    laps.lap("policy")
    ref_logits = padded_forward(reference, ids, attn).logits
    ref_logprobs = gather_logprobs(response_positions(ref_logits, rollout), tokens, temperature) * mask
    laps.lap("reference")
    return old_logprobs, old_values, ref_logprobs


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability in ``model`` to 0 and return it.

    PPO's ratio ``π_new/π_old`` compares the policy with itself before the update; with dropout on,
    two forward passes of the *same* weights disagree, so the first minibatch already sees a ratio
    ≠ 1, clips, and reports a KL to the old policy that no update caused. lm-human-preferences and
    TRL's PPOTrainer switch dropout off in every model PPO trains or scores with.

    Taught in notebook 05.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


# ----------------------------------------------------------------------------- one step


@dataclass
class Experience:
    """What PPO computes from one rollout before it updates (steps 1–3 of a step): ``[B, R]``
    tensors, 0 at padding, and ``scores`` ``[B]``, all on the model's device.

    Taught in notebook 05.
    """

    rollout: Rollout
    mask: torch.Tensor  # 1 on the response tokens that count, up to and including <eos>
    old_logprobs: torch.Tensor  # log π_old(y_t) at the sampling temperature
    old_values: torch.Tensor  # V_old(t)
    ref_logprobs: torch.Tensor  # log π_ref(y_t) at the sampling temperature
    scores: torch.Tensor  # the proxy score, minus the missing-EOS penalty where it applies
    kl: torch.Tensor  # kl_t of config.kl_estimator
    rewards: torch.Tensor  # r_t = −β·kl_t, plus the score at the last token
    advantages: torch.Tensor  # GAE, whitened if config.whiten_advantages
    returns: torch.Tensor  # the value targets A_t + V_t (before whitening)


@torch.no_grad()
def collect_experience(
    world: RLWorld,
    model: PolicyAndValue,
    reference: PreTrainedModel,
    prompts: list[str],
    config: PPOConfig,
    beta: float,
    laps: Laps | None = None,
) -> Experience:
    """Steps 1–3 of a PPO step on ``prompts``: the policy samples at ``config.temperature``, the
    policy, value and reference models score the sampled tokens (:func:`rollout_logprobs`), the
    reward model scores each response, and then ``r_t = −β·kl_t`` plus the score at the last token
    [Z19], GAE advantages and returns, whitened [H24]. ``laps`` (if given) records each phase.

    Taught in notebook 05.
    """
    laps = laps or Laps()
    rollout = sample(
        model.policy,
        world.tokenizer,
        prompts,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        eos_token_id=world.eos_token_ids,
    )
    laps.lap("generate")
    old_logprobs, old_values, ref_logprobs = rollout_logprobs(
        model, reference, rollout, config.temperature, laps
    )
    mask = rollout.response_mask.to(old_logprobs.device).float()
    scores = world.score(rollout).to(old_logprobs.device)
    if config.missing_eos_penalty is not None:  # [H24]
        scores = scores - config.missing_eos_penalty * (~rollout.ended).float().to(scores.device)
    laps.lap("score")
    kl = per_token_kl(old_logprobs, ref_logprobs, mask, config.kl_estimator)
    rewards = shaped_rewards(scores, kl, mask, beta)
    laps.lap("kl")
    advantages, returns = gae(rewards, old_values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    laps.lap("advantages")
    return Experience(
        rollout, mask, old_logprobs, old_values, ref_logprobs, scores, kl, rewards, advantages, returns
    )


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale every gradient by ``min(1, max_norm / (‖g‖₂ + 1e-6))``, where ``‖g‖₂`` is the L2 norm of
    all the gradients as one vector, and return ``‖g‖₂``: ``torch.nn.utils.clip_grad_norm_``'s rule
    (and accelerate's, which adds bookkeeping for sharded models), with the norm taken over the
    concatenated gradients in one pass instead of one norm per tensor.

    Taught in notebook 05.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm, foreach=True)
    return norm


def ppo_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    exp: Experience,
    config: PPOConfig,
) -> dict[str, list[float]]:
    """Step 4 of a PPO step: ``config.ppo_epochs`` passes over ``exp`` in shuffled minibatches of
    ``config.mini_batch_size``, each one Adam step on the clipped policy loss plus ``vf_coef`` times
    the clipped value loss, with the gradient norm clipped. Returns each minibatch's statistics, in
    the order they ran: clip fraction, approx-KL to the old policy, value and policy loss, entropy.

    Taught in notebook 05.
    """
    rollout, mask = exp.rollout, exp.mask
    device = mask.device
    ids, attn = rollout.input_ids.to(device), rollout.attention_mask.to(device)
    tokens = rollout.response_ids.to(device)
    names = ("clip_fraction", "approx_kl", "value_loss", "policy_loss", "entropy")
    per_minibatch = []  # one [5] tensor per minibatch, read back once at the end: no sync per minibatch
    trainable = [p for p in model.parameters() if p.requires_grad]
    for _ in range(config.ppo_epochs):
        order = torch.randperm(len(ids))
        for mb in order.split(config.mini_batch_size):
            new_logits, new_values = model(ids[mb], attn[mb])
            resp_logits = response_positions(new_logits, rollout)
            new_logprobs = gather_logprobs(resp_logits, tokens[mb], config.temperature)
            m = mask[mb]
            pg, clip_fraction = policy_loss(
                new_logprobs, exp.old_logprobs[mb], exp.advantages[mb], m, config.clip_range
            )
            vf = value_loss(
                response_positions(new_values, rollout),
                exp.old_values[mb],
                exp.returns[mb],
                m,
                config.clip_range_value,
            )
            optimizer.zero_grad()
            accelerator.backward(pg + config.vf_coef * vf)
            clip_gradients(trainable, config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                # approx-KL to the old policy: k2 = ½(log π_new − log π_old)², the KL from the
                # policy that sampled this batch (not the KL to the reference)
                approx_kl = masked_mean(k2(exp.old_logprobs[mb], new_logprobs), m)
                ent = masked_mean(entropy(resp_logits.float() / config.temperature), m)
                per_minibatch.append(torch.stack([clip_fraction, approx_kl, vf, pg, ent]).detach())
    columns = torch.stack(per_minibatch).T.tolist()
    return dict(zip(names, columns, strict=True))


# ----------------------------------------------------------------------------- training


def build_models(
    world: RLWorld, config: PPOConfig, device: torch.device, start: PreTrainedModel | None = None
) -> tuple[PolicyAndValue, nn.Module]:
    """The policy-and-value model PPO trains, and the reference it scores against, on ``device``: the
    policy a copy of ``start`` (default: the world's reference), the reference the world's, frozen;
    with ``config.lora_rank`` the policy copy has LoRA adapters, and the reference is the same model
    with its adapter off (:class:`klcourse.lora.AdapterOff`). Only what trains requires a gradient.

    Taught in notebook 09.
    """
    if start is not None and config.lora_rank is not None:
        raise ValueError("a LoRA policy's reference is its own base: it cannot start from another model")
    reward_model = disable_dropout(world.reward_model.to(device))
    policy = copy.deepcopy(world.reference if start is None else start)
    # Dropout off in every model [Z19, H24]: with no dropout (and no other layer that differs between
    # modes) train and eval mode compute the same function, so one mode serves the rollout and the
    # update, and the first minibatch sees a ratio of exactly 1.
    model = disable_dropout(
        PolicyAndValue(
            policy, reward_model if world.value_from_reward else None, world.score_normalisation
        ).to(device)
    ).eval()
    model.requires_grad_(True)
    if config.lora_rank is None:
        return model, disable_dropout(world.reference.to(device))  # frozen: never trained, never generates
    model.policy = with_lora(model.policy, config.lora_rank)  # after the value model took its copy
    return model, AdapterOff(model.policy)


@dataclass
class PPOResult:
    """What a run returns: the trained policy, the per-step metrics and the config.

    Taught in notebook 05.
    """

    policy: PreTrainedModel
    metrics: pd.DataFrame
    config: PPOConfig
    seconds: float


#: Seed strides: step ``t`` of process ``r`` in a run seeded ``s`` draws its prompts with seed
#: ``s·RUN_SEED_STRIDE + t·STEP_SEED_STRIDE + r``. Both strides are primes larger than any step count
#: or process count the course uses, so no two (run, step, process) share a prompt stream.
RUN_SEED_STRIDE = 1_000_003
STEP_SEED_STRIDE = 7919


def prompt_seed(run_seed: int, step: int, rank: int) -> int:
    """The seed of the prompts that process ``rank`` samples at ``step`` of a run seeded ``run_seed``.

    Taught in notebook 05.
    """
    return run_seed * RUN_SEED_STRIDE + step * STEP_SEED_STRIDE + rank


#: Adam's ε in :func:`adamw` (CleanRL's and the PPO implementation details' choice; torch's default is 1e-8).
ADAM_EPS = 1e-5


def adamw(parameters, lr: float) -> torch.optim.AdamW:
    """PPO's optimiser: ``torch.optim.AdamW`` at learning rate ``lr``, ε = :data:`ADAM_EPS`, weight
    decay 0.01 (torch's default) on every parameter, betas (0.9, 0.999); the learning rate stays
    constant. Notebook 07 gives TRL's trainers the same one. ``fused``: one kernel updates every
    parameter (transformers' default optimiser, ``adamw_torch_fused``, from torch 2.8); on this
    course's small models the per-tensor operations of the ``foreach`` update cost more than the
    arithmetic. The update is the same formula; fused and foreach round differently (≈1e-8).

    Taught in notebooks 05 and 07.
    """
    return torch.optim.AdamW(parameters, lr=lr, eps=ADAM_EPS, weight_decay=0.01, fused=True)


def train(
    world: RLWorld,
    config: PPOConfig,
    *,
    progress: bool = True,
    data_parallel: bool = True,
    start: PreTrainedModel | None = None,
    after_step: Callable[[int, nn.Module], None] | None = None,
) -> PPOResult:
    """Run PPO from the world's reference (the SFT model), or from ``start`` if given, against its
    proxy reward model and its reference; return the result. Any
    :class:`klcourse.world.protocol.RLWorld` will do; the metrics it cannot give (gold reward,
    well-formed rate) are left out of the table.

    With ``data_parallel`` (the default), ``accelerate`` places the models and, under
    ``accelerate launch``, wraps them for data parallelism: every process samples its own prompts
    and gradients are averaged, so the replicas stay identical. ``data_parallel=False`` trains on
    ``world.device`` alone, for runs that are independent of the other processes (a sweep).

    ``after_step(step, policy)``, if given, is called after every step (``step`` counts from 1) with
    the policy as it now is: notebook 09 measures its students there.

    Taught in notebooks 04, 05, 07 and 09.
    """
    accelerator = Accelerator(cpu=world.device.type == "cpu")
    rank, n_proc = (accelerator.process_index, accelerator.num_processes) if data_parallel else (0, 1)
    device = accelerator.device if data_parallel else world.device
    torch.manual_seed(config.seed + rank)  # one sampling stream per process: each samples its own responses
    model, reference = build_models(world, config, device, start)
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], config.lr)
    if data_parallel:
        model, optimizer = accelerator.prepare(model, optimizer)
    # Two handles to the same weights: ``model`` may be wrapped for data parallelism (DDP), and its
    # forward passes are the ones whose gradients are averaged across processes, so the update uses
    # it; ``unwrapped`` is the plain module, for what no gradient flows through (generate, scoring).
    unwrapped: PolicyAndValue = accelerator.unwrap_model(model)
    controller = (
        AdaptiveKLController(config.beta, config.kl_target, config.kl_horizon) if config.adaptive_kl else None
    )
    beta = config.beta
    rows = []
    start = time.perf_counter()
    bar = tqdm(
        range(config.steps),
        desc=f"PPO β={config.beta:g}",
        disable=not progress or rank != 0,
    )
    for step in bar:
        # 1–3. Rollout, rewards r_t = −β·kl_t plus the score at the last token, advantages ---------
        laps = Laps()
        prompts = world.prompts(config.batch_size, seed=prompt_seed(config.seed, step, rank))
        exp = collect_experience(world, unwrapped, reference, prompts, config, beta, laps)
        # 4. PPO epochs over minibatches ------------------------------------------------------------
        stats = ppo_update(model, optimizer, accelerator, exp, config)
        laps.lap("update")

        # 5. Metrics and β ------------------------------------------------------------------------
        rollout, scores, kl, mask = exp.rollout, exp.scores, exp.kl, exp.mask
        old_logprobs, ref_logprobs = exp.old_logprobs, exp.ref_logprobs
        texts = world.texts(rollout)
        gold, well_formed = world.gold(rollout), world.well_formed(rollout)
        seq_k1 = per_token_kl(old_logprobs, ref_logprobs, mask, "k1").sum(1)
        seq_k3 = per_token_kl(old_logprobs, ref_logprobs, mask, "k3").sum(1)
        row = {
            "step": step + 1,
            "episodes": (step + 1) * config.batch_size * n_proc,
            "proxy_score": scores.mean().item(),
            **({} if gold is None else {"gold_reward": gold.mean().item()}),
            **({} if well_formed is None else {"well_formed": well_formed}),
            "kl_k1": seq_k1.mean().item(),
            "kl_k3": seq_k3.mean().item(),
            "non_score_reward": -(beta * kl.sum(1)).mean().item(),
            "adjusted_reward": adjusted_reward(scores, kl, mask, beta).mean().item(),
            "beta": beta,
            "response_length": mask.sum(1).mean().item(),
            "explained_variance": explained_variance(exp.old_values, exp.returns, mask),
            **{k: sum(v) / len(v) for k, v in stats.items()},
            **laps.seconds,
            "seconds": time.perf_counter() - start,
            "samples": " | ".join(texts[: config.samples_per_step]),
        }
        rows.append(row)
        if controller is not None:
            beta = controller.update(
                (accelerator.reduce(seq_k1.mean(), "mean") if n_proc > 1 else seq_k1.mean()).item(),
                config.batch_size * n_proc,
            )
        shown = {k: row[k] for k in ("proxy_score", "gold_reward", "kl_k1") if k in row}
        bar.set_postfix({k.split("_")[0]: f"{v:.2f}" for k, v in shown.items()})
        if after_step is not None:
            after_step(step + 1, unwrapped.policy)
    policy = accelerator.unwrap_model(model).policy
    return PPOResult(
        policy=policy, metrics=pd.DataFrame(rows), config=config, seconds=time.perf_counter() - start
    )


__all__ = [
    "AdaptiveKLController",
    "Experience",
    "PPOConfig",
    "PPOResult",
    "PolicyAndValue",
    "adjusted_reward",
    "build_models",
    "clip_gradients",
    "collect_experience",
    "config_for",
    "disable_dropout",
    "explained_variance",
    "gae",
    "masked_mean",
    "policy_loss",
    "ppo_update",
    "prompt_seed",
    "rollout_logprobs",
    "shaped_rewards",
    "train",
    "value_loss",
    "whiten",
]
