"""Per-token heat maps: each token of a response drawn as a box coloured by a per-token value."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm


def token_heatmap(
    rows: Sequence[Sequence[str]],
    values: Sequence[Sequence[float]],
    *,
    title: str = "",
    label: str = "per-token KL (nats)",
    row_labels: Sequence[str] | None = None,
    ax=None,
    quantile: float = 0.95,
):
    """Draw ``rows`` of tokens, token ``j`` of row ``i`` coloured by ``values[i][j]``.

    Signed values (any negative) use a diverging map centred on 0, so negative k1 values show in
    blue; non-negative values use a sequential map. The colour scale ends at the ``quantile`` of
    ``|value|``, so that one outlier does not wash every other token out; tokens beyond it take the
    end colour and the colour bar shows an arrow. Returns the matplotlib axes.

    Taught in notebooks 03 and 05.
    """
    if len(rows) != len(values) or any(len(r) != len(v) for r, v in zip(rows, values, strict=True)):
        raise ValueError("rows and values must have the same shape")
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    flat = np.concatenate([np.asarray(v, float) for v in values]) if rows else np.zeros(1)
    if not np.isfinite(flat).all():
        raise ValueError("values must be finite")
    bound = max(float(np.quantile(np.abs(flat), quantile)), 1e-9)
    lo, hi = float(flat.min()), float(flat.max())
    if lo < 0:
        norm, cmap = TwoSlopeNorm(0.0, -bound, bound), plt.get_cmap("coolwarm")
        below, above = lo < -bound, hi > bound
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
            (below, above), "both"
        )
    else:
        norm, cmap = Normalize(0.0, bound, clip=True), plt.get_cmap("Reds")
        extend = "max" if hi > bound else "neither"
    if ax is None:
        width = max(6.0, 0.75 * max((len(r) for r in rows), default=1) + 2.5)
        _, ax = plt.subplots(figsize=(width, 0.45 * len(rows) + 1.0))
    for i, (tokens, vals) in enumerate(zip(rows, values, strict=True)):
        for j, (tok, v) in enumerate(zip(tokens, vals, strict=True)):
            ax.add_patch(plt.Rectangle((j, -i - 0.9), 0.96, 0.8, color=cmap(norm(v))))
            ax.text(j + 0.48, -i - 0.5, tok, ha="center", va="center", fontsize=8)
    ax.set_xlim(0, max((len(r) for r in rows), default=1))
    ax.set_ylim(-len(rows) - 0.1, 0)
    ax.set_xticks([])
    ax.set_yticks([-i - 0.5 for i in range(len(rows))], row_labels or [""] * len(rows))
    ax.grid(False)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.figure.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label, fraction=0.03, extend=extend
    )
    if title:
        ax.set_title(title)
    return ax
