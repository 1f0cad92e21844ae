"""klcourse: helpers for the notebook course on KL divergence in RLHF.

Modules, one concept each:

* :mod:`klcourse.kl` — exact KL and the Monte Carlo estimators k1, k2, k3.
* :mod:`klcourse.schulman` — Schulman's Gaussian experiment, exactly and by sampling.
* :mod:`klcourse.fitting` — forward vs reverse KL fits of a Gaussian to a bimodal target.
* :mod:`klcourse.world` — the ground-truth world, a subpackage: grammar, gold reward, biased
  annotator, tokenizer, SFT and reward models trained with TRL, their cache, and loading any model
  by hub name or path.
* :mod:`klcourse.sampling`, :mod:`klcourse.logprobs` — the policy samples; the reference scores
  the same tokens; per-token log-probs and KL. :mod:`klcourse.padding` — one forward pass over a
  padded batch, positions from the attention mask, so no score or log-prob depends on its batch.
* :mod:`klcourse.chain_rule` — the sequence-KL chain rule, checked by enumeration.
* :mod:`klcourse.ppo` — PPO with a KL penalty; :mod:`klcourse.optimal` — π* and best-of-n;
  :mod:`klcourse.scaling` — Gao et al.'s over-optimisation forms; :mod:`klcourse.sweep` —
  resumable β ablations with standard errors; :mod:`klcourse.gradients` — the exact gradient of
  each KL estimator as a reward or as a loss; :mod:`klcourse.trainers` — TRL's RLOO and GRPO on
  the world, and one evaluation for every policy.
* :mod:`klcourse.tools.bench` — benchmarks; :mod:`klcourse.heatmap`, :mod:`klcourse.widgets` — plots;
  :mod:`klcourse.exercises`, :mod:`klcourse.coding` — the exercises and the coding checker;
  :mod:`klcourse.coding_exercises` — each notebook's coding exercises, a subpackage;
  :mod:`klcourse.diversity`, :mod:`klcourse.stats` — mode collapse; mean ± standard error;
  :mod:`klcourse.timing` — phase timings; :mod:`klcourse.config`,
  :mod:`klcourse.seeding`, :mod:`klcourse.settings` (the environment variables),
  :mod:`klcourse.tools.notebook`, :mod:`klcourse.tools.regenerate`, :mod:`klcourse.tools.seedcheck`,
  :mod:`klcourse.tools.cli` (what the command lines share) — plumbing.
"""

__version__ = "0.1.0"
