"""The coin explorer of notebook 01: move two coins' probabilities and watch KL both ways.

:func:`coin_explorer` shows ipywidgets sliders when a widget front end is available, and falls
back to :func:`coin_kl_map`, a static picture of the same function, everywhere else (a plain
terminal, a static render of the notebook, or ``static=True``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from klcourse.kl import bernoulli_kl


def coin_kl_text(a: float, b: float) -> str:
    """Both directions of KL between coins with heads probabilities ``a`` and ``b``, in nats:
    ``KL(A‖B) = a·ln(a/b) + (1−a)·ln((1−a)/(1−b))`` and the same with ``a`` and ``b`` swapped.

    Taught in notebook 01.
    """
    return f"KL(A‖B) = {bernoulli_kl(a, b):.4f} nats   KL(B‖A) = {bernoulli_kl(b, a):.4f} nats"


def coin_bars(a: float, b: float, ax=None):
    """Bar chart of coins A and B with ``KL(A‖B)`` and ``KL(B‖A)`` in the title.

    Taught in notebook 01.
    """
    ax = ax or plt.gca()
    x = np.arange(2)
    ax.bar(x - 0.2, [a, 1 - a], width=0.4, label=f"A (heads {a:.2f})")
    ax.bar(x + 0.2, [b, 1 - b], width=0.4, label=f"B (heads {b:.2f})")
    ax.set_xticks(x, ["heads", "tails"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(loc="upper right")
    ax.set_title(coin_kl_text(a, b))
    return ax


def coin_kl_map(n: int = 199, mark: tuple[float, float] | None = (0.7, 0.5)):
    """Static fallback: ``KL(A‖B)`` for every pair of coin biases, as a heat map.

    ``mark`` puts a dot at one ``(a, b)`` pair (the course's coin example by default).
    Returns the matplotlib figure.

    Taught in notebook 01.
    """
    probs = np.linspace(0.005, 0.995, n)
    a, b = np.meshgrid(probs, probs, indexing="ij")
    kl = bernoulli_kl(a, b)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.pcolormesh(probs, probs, np.log10(kl.T + 1e-4), shading="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log10(KL(A‖B) + 1e-4) [nats]")
    ax.plot(probs, probs, "w--", lw=1, label="A = B: KL = 0")
    if mark is not None:
        ax.plot(*mark, "ro", label=f"a={mark[0]}, b={mark[1]}: {bernoulli_kl(*mark):.4f} nats")
    ax.set_xlabel("a = P_A(heads)")
    ax.set_ylabel("b = P_B(heads)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("KL(A‖B) blows up as b → 0 or 1 while a stays inside")
    return fig


def coin_explorer(static: bool = False):
    """Sliders for both coins when ipywidgets can render (an ``ipywidgets.interactive`` widget showing
    :func:`coin_kl_text` as text and :func:`coin_bars`), else the static :func:`coin_kl_map` (§7).

    Taught in notebook 01.
    """
    if not static:
        try:
            import ipywidgets as widgets
            from IPython import get_ipython
        except ImportError:
            static = True
        else:
            static = get_ipython() is None
    if static:
        return coin_kl_map()

    def show(a: float, b: float) -> None:
        print(coin_kl_text(a, b))
        fig, ax = plt.subplots(figsize=(6, 3))
        coin_bars(a, b, ax)
        plt.show()

    slider = dict(min=0.01, max=0.99, step=0.01, continuous_update=False)
    # ``interactive`` is the widget itself (``interact`` would return ``show``, whose repr the cell printed)
    return widgets.interactive(
        show,
        a=widgets.FloatSlider(value=0.7, description="A heads", **slider),
        b=widgets.FloatSlider(value=0.5, description="B heads", **slider),
    )
