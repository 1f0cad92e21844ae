"""The ground-truth world of notebooks 03–07, one module per part:

* :mod:`~klcourse.world.grammar` — the review grammar, with an exact probability for every sentence;
* :mod:`~klcourse.world.gold` — the gold reward, the truth the policy never sees;
* :mod:`~klcourse.world.annotator` — the biased annotator whose preferences train the proxy;
* :mod:`~klcourse.world.tokenizer` — the word-level tokenizer;
* :mod:`~klcourse.world.training` — the SFT and reward models, trained with TRL;
* :mod:`~klcourse.world.artifacts` — the cache they are built into, written atomically and verified;
* :mod:`~klcourse.world.loading` — any causal LM or reward model by hub name or local path;
* :mod:`~klcourse.world.core` — :class:`World`, :func:`build` and :func:`load_world`.

The short imports ``from klcourse.world import World, load_world, MAX_RESPONSE_TOKENS`` work as
they always did. They resolve on first use, so that :mod:`klcourse.sampling` (which the world samples
with) can import the grammar without loading the models' code first.
"""

from __future__ import annotations

from importlib import import_module

#: The names ``klcourse.world`` hands on from :mod:`klcourse.world.core`.
__all__ = ["BUILD_VERSION", "MAX_RESPONSE_TOKENS", "NORMALISATION_SAMPLES", "World", "build", "load_world"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("klcourse.world.core"), name)
    raise AttributeError(f"module 'klcourse.world' has no attribute {name!r}")
