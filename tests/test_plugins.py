"""A pip-installed plugin package is found by `rlvr list` and `make` with no import by the user."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def _broken_plugin(where: Path) -> Path:
    pkg = where / "rlvr-broken-plugin"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "rlvr-broken-plugin"
        version = "0.0.1"
        [project.entry-points."rlvr.verifiers"]
        broken = "rlvr_no_such_module:Verifier"
        [tool.setuptools]
        py-modules = []
    """))
    return pkg


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory):
    where = tmp_path_factory.mktemp("plugins")
    example = shutil.copytree(ROOT / "examples" / "rlvr-reverse", where / "rlvr-reverse")
    subprocess.run([*PIP, "install", "--no-deps", str(example), str(_broken_plugin(where))], check=True)
    yield
    subprocess.run([*PIP, "uninstall", "-y", "rlvr-reverse", "rlvr-broken-plugin"], check=True)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_rlvr_list_shows_the_plugin_env_verifier_and_algorithm(installed_plugins):
    out = subprocess.run([sys.executable, "-m", "rlvr.cli", "list"], capture_output=True, text=True, check=True)
    assert "reverse/Reverse-v0" in out.stdout and "Reverse a word" in out.stdout
    assert "\nexact " in out.stdout and "\nreinforce_nobaseline " in out.stdout
    assert out.stderr.count("plugin 'broken'") == 1  # the broken plugin: one warning, no crash


def test_make_finds_plugin_envs_verifiers_and_algorithms_without_imports(installed_plugins):
    code = textwrap.dedent("""
        import warnings, rlvr, torch
        from rlvr import algorithms, verifiers
        warnings.simplefilter("ignore")
        env = rlvr.make("reverse/Reverse-v0")
        obs, info = env.reset(seed=0)
        word = obs.rsplit(" ", 1)[1]
        print(env.step(word[::-1])[1], env.step(word)[1])
        print(type(verifiers.make("exact")).__name__)
        algo = algorithms.make("reinforce_nobaseline")
        print(algo.advantages(torch.tensor([[1.0, 0.0]])).tolist())
    """)
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["1.0 0.0", "ExactMatch", "[[1.0, 0.0]]"]


def test_a_broken_plugin_warns_once_and_names_itself(installed_plugins):
    out = _run("import rlvr.verifiers as v; print(v.names())")
    assert out.returncode == 0 and "'math'" in out.stdout and "'exact'" in out.stdout
    assert "plugin 'broken'" in out.stderr and "rlvr_no_such_module" in out.stderr
