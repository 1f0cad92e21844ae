"""Shared fixtures: one smoke-preset world per test session, built into a temporary cache."""

import pytest
import torch

from klcourse.world import load_world


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    """A cache folder holding the smoke-preset world (built once per session)."""
    root = tmp_path_factory.mktemp("klcourse-cache")
    load_world("smoke", torch.device("cpu"), progress=False, root=root, log=lambda m: None)
    return root


@pytest.fixture
def smoke_world(smoke_root):
    """The smoke-preset world, loaded fresh for each test (so tests cannot leak state)."""
    return load_world("smoke", torch.device("cpu"), progress=False, root=smoke_root, log=lambda m: None)
