"""klcourse: helpers for the notebook course on KL divergence in RLHF.

Modules, one concept each:

* :mod:`klcourse.kl` — exact KL and the Monte Carlo estimators k1, k2, k3.
* :mod:`klcourse.fitting` — forward vs reverse KL fits of a Gaussian to a bimodal target.
* :mod:`klcourse.widgets` — the interactive coin explorer (with a static fallback).
* :mod:`klcourse.exercises` — the checker for the notebooks' exercises.
* :mod:`klcourse.config` — device and preset selection.
* :mod:`klcourse.seeding` — one helper that seeds every generator.
"""

__version__ = "0.1.0"
