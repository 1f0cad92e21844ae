"""Diversity measures (distinct-n, modal share, entropy), the mean and its standard error, Kish's
effective sample size, the heat map's outlier-robust colour scale, and the run times written by
``klcourse regenerate``."""

import json
import math
import re
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

from klcourse.diversity import distinct_n, measure, modal_share
from klcourse.heatmap import token_heatmap
from klcourse.optimal import effective_sample_size, snis_weights
from klcourse.sampling import every_prompt
from klcourse.stats import mean_and_se
from klcourse.tools import regenerate

matplotlib.use("Agg")
ROOT = Path(__file__).parents[1]


def test_distinct_n_counts_within_texts_only():
    texts = ["the food was good .", "the food was bad ."]
    assert distinct_n(texts, 1) == pytest.approx(6 / 10)
    assert distinct_n(texts, 2) == pytest.approx(6 / 8)  # "the food", "food was" repeat; no bigram ". the"
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(texts, 0)


def test_modal_share():
    assert modal_share(["a", "b", "a", "a"]) == 0.75
    with pytest.raises(ValueError):
        modal_share([])


def test_entropy_estimate_matches_the_exact_entropy_of_an_enumerable_policy(smoke_world):
    """On a policy that always stops after one token, H(π(·|x)) is that token's entropy, computed exactly."""
    world = smoke_world
    d = measure(
        world.reference,
        world.tokenizer,
        every_prompt(world.grammar)[:2],
        samples_per_prompt=256,
        max_new_tokens=1,
        seed=0,
    )
    with torch.no_grad():
        enc = world.tokenizer(every_prompt(world.grammar)[:2], return_tensors="pt", padding=True)
        logp = world.reference(**enc).logits[:, -1].log_softmax(-1).double()
    exact = float((-(logp.exp() * logp).sum(-1)).mean())
    assert abs(d.entropy - exact) < 5 * d.entropy_se, (d.entropy, exact, d.entropy_se)
    assert d.prompts == 2 and d.samples_per_prompt == 256 and 0 < d.modal_share <= 1


def test_measure_rejects_too_few_samples(smoke_world):
    with pytest.raises(ValueError, match="samples_per_prompt"):
        world = smoke_world
        measure(
            world.reference, world.tokenizer, ["the food"], samples_per_prompt=1, max_new_tokens=2, seed=0
        )


def test_mean_and_se():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        mean_and_se([1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_and_se([1.0, math.nan])


def test_effective_sample_size():
    assert effective_sample_size(np.ones(8)) == pytest.approx(8)
    assert effective_sample_size(np.array([1.0, 0.0, 0.0])) == pytest.approx(1)
    assert effective_sample_size(np.array([2.0, 1.0, 1.0])) == pytest.approx(1 / (0.5**2 + 0.25**2 + 0.25**2))
    w = snis_weights(np.random.default_rng(0).normal(size=100), beta=0.3)
    assert effective_sample_size(w) == pytest.approx(1 / np.sum(w**2))
    for bad in (np.array([]), np.array([1.0, -1.0]), np.array([np.inf, 1.0]), np.zeros(3)):
        with pytest.raises(ValueError):
            effective_sample_size(bad)


def test_heatmap_scale_ignores_one_outlier():
    values = [[0.1, 0.2, 0.15, 0.12] * 5, [0.11, 0.18, 0.14, 0.13] * 4 + [0.11, 0.18, 0.14, 50.0]]
    rows = [["w"] * 20, ["w"] * 20]
    ax = token_heatmap(rows, values)
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylim()[1] < 1.0, "one outlier of 50 must not set the top of the colour scale"
    with pytest.raises(ValueError, match="quantile"):
        token_heatmap(rows, values, quantile=0)


def test_run_time_is_stamped_into_the_header_and_the_readme(tmp_path):
    header = nbformat.v4.new_markdown_cell("# 01 · x\n\n**Run time**: old.\nnotes")
    nb = nbformat.v4.new_notebook(cells=[header])
    assert regenerate.stamp_run_time(nb, 12.4)
    assert nb.cells[0].source.splitlines()[2].startswith("**Run time**: 12 s, measured by")
    assert nb.cells[0].source.endswith("\nnotes")
    times = regenerate.record_run_times(tmp_path, {tmp_path / "01_x.ipynb": 12.4})
    assert json.loads((tmp_path / regenerate.RUNTIMES).read_text()) == {"01_x.ipynb": 12.4} == times
    readme = tmp_path / "README.md"
    readme.write_text("| notebook | what | run time |\n|---|---|---|\n| `01_x` | teaches a \\| b | 3 s |\n")
    regenerate.stamp_readme(readme, times)
    assert readme.read_text().splitlines()[2] == "| `01_x` | teaches a \\| b | 12 s |"


def test_committed_run_times_agree_everywhere():
    times = json.loads((ROOT / "notebooks" / regenerate.RUNTIMES).read_text())
    readme = (ROOT / "README.md").read_text()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        seconds = times[path.name]
        header = nbformat.read(path, as_version=4).cells[0].source
        assert f"**Run time**: {seconds:.0f} s," in header, path.name
        row = re.search(rf"^\| `{path.stem}` \|.*\| ([0-9]+) s \|$", readme, re.MULTILINE)
        assert row is not None and int(row.group(1)) == round(seconds), path.name
