"""klcourse: helpers for the notebook course on KL divergence in RLHF.

Modules, one concept each:

* :mod:`klcourse.kl` — exact KL and the Monte Carlo estimators k1, k2, k3.
* :mod:`klcourse.schulman` — Schulman's Gaussian experiment, exactly and by sampling.
* :mod:`klcourse.fitting` — forward vs reverse KL fits of a Gaussian to a bimodal target.
* :mod:`klcourse.grammar`, :mod:`klcourse.gold` — the review grammar and its gold reward;
  :mod:`klcourse.annotator` — the biased annotator whose preferences train the proxy.
* :mod:`klcourse.tokenizer`, :mod:`klcourse.training`, :mod:`klcourse.world` — the world's
  tokenizer, its SFT and reward models (trained with TRL), built offline and cached
  (:mod:`klcourse.artifacts`); :mod:`klcourse.loading` loads any model by hub name or path.
* :mod:`klcourse.sampling`, :mod:`klcourse.logprobs` — the policy samples; the reference scores
  the same tokens; per-token log-probs and KL.
* :mod:`klcourse.chain_rule` — the sequence-KL chain rule, checked by enumeration.
* :mod:`klcourse.ppo` — PPO with a KL penalty; :mod:`klcourse.optimal` — π* and best-of-n;
  :mod:`klcourse.scaling` — Gao et al.'s over-optimisation forms; :mod:`klcourse.sweep` —
  resumable β ablations with standard errors; :mod:`klcourse.gradients` — the exact gradient of
  each KL estimator as a reward or as a loss; :mod:`klcourse.trainers` — TRL's RLOO and GRPO on
  the world, and one evaluation for every policy.
* :mod:`klcourse.bench` — benchmarks; :mod:`klcourse.heatmap`, :mod:`klcourse.widgets` — plots;
  :mod:`klcourse.exercises` — the exercise checker; :mod:`klcourse.config`,
  :mod:`klcourse.seeding`, :mod:`klcourse.settings` (the environment variables),
  :mod:`klcourse.notebook`, :mod:`klcourse.regenerate`, :mod:`klcourse.seedcheck`,
  :mod:`klcourse.cli` (what the command lines share) — plumbing.
"""

__version__ = "0.1.0"
