"""The ``nemo-minitron`` CLI: stage dispatch onto NeMo-Run entrypoints, recipes and YAML configs.

Subprocess tests run the installed console script (``.venv/bin/nemo-minitron``) when it exists,
else ``python -m nemo_minitron.cli``; in-process tests drive :func:`nemo_minitron.cli.main` with
a small stand-in stage so that the dispatch machinery is checked without training anything.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest
import yaml

from nemo_minitron import cli
from nemo_minitron.stages.renames import renamed

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "configs" / "tiny.yaml"
PRETRAIN_TARGET = "nemo_minitron.stages.pretrain.pretrain"


def _cli_command() -> List[str]:
    script = Path(sys.executable).parent / "nemo-minitron"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nemo_minitron.cli"]


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", COLUMNS="200", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*_cli_command(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # as in CI: no terminal, so no confirmation prompt
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------------
# Top level: cheap, no stage imported


def test_help_lists_stages_without_importing_them():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for name, stage in cli.STAGES.items():
        assert name in proc.stdout
        assert stage.summary in proc.stdout
    # Listing the stages imports neither NeMo-Run nor any stage (torch, Lightning).
    code = (
        "import sys, contextlib, io\n"
        "from nemo_minitron import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert cli.main(['--help']) == 0\n"
        "heavy = [m for m in ('nemo_run', 'torch', 'lightning', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    check = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_unknown_stage_is_a_clear_error():
    proc = run_cli("pretrian", "save_path=x")
    assert proc.returncode == 2
    assert "unknown stage 'pretrian'" in proc.stderr
    assert "Did you mean 'pretrain'" in proc.stderr
    for name in cli.STAGES:
        assert name in proc.stderr


def test_no_arguments_prints_usage_and_fails():
    assert cli.main([]) == 2


def test_python_dash_m_works():
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_minitron.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pretrain" in proc.stdout


def test_stage_registry_targets_are_well_formed():
    for name, stage in cli.STAGES.items():
        module, sep, attr = stage.target.partition(":")
        assert sep and module and attr, name
        assert name.isidentifier() or name.replace("_", "").isalnum()


@pytest.mark.parametrize("name", list(cli.STAGES))
def test_every_stage_is_found_by_its_name(name):
    """Each stage is ``nemo_minitron.stages.<name>:<function>``: one module per stage, named as it (with
    PEP 8's trailing underscore for a Python keyword: ``import`` -> ``stages/import_.py``)."""
    import importlib
    import keyword

    module, _, attr = cli.STAGES[name].target.partition(":")
    assert module == f"nemo_minitron.stages.{name}{'_' * keyword.iskeyword(name)}", cli.STAGES[name].target
    assert callable(getattr(importlib.import_module(module), attr))


LIBRARY_PACKAGES = ("models", "data", "prune", "losses", "train", "evaluate", "posttrain", "ablations")


def _imported_modules(path: Path, package: str) -> List[str]:
    """Absolute names of every module ``path`` (inside ``package``) imports, relative ones resolved."""
    import ast

    parts = package.split(".")
    if path.name != "__init__.py":
        parts.append(path.stem)
    names: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(parts[: len(parts) - node.level] + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_library_packages_import_no_stage():
    package_root = ROOT / "nemo_minitron"
    offenders = []
    for package in LIBRARY_PACKAGES:
        for path in sorted((package_root / package).rglob("*.py")):
            package_name = ".".join(("nemo_minitron", *path.parent.relative_to(package_root).parts))
            for name in _imported_modules(path, package_name):
                if name == "nemo_minitron.stages" or name.startswith("nemo_minitron.stages."):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders
    assert _imported_modules(package_root / "prune" / "search.py", "nemo_minitron.prune")  # the scan sees imports


# ---------------------------------------------------------------------------------------------
# The dispatch machinery, in process, on a stand-in stage (nothing trained)

CALLS: list = []


@dataclass
class ToyPruningConfig:
    target_hidden_size: Optional[int] = None
    target_mamba_num_heads: Optional[int] = None
    drop_layers: Optional[List[int]] = None


def toy_stage(
    output_dir: str,
    steps: int = 3,
    lr: float = 1e-3,
    pruning_config: ToyPruningConfig = ToyPruningConfig(),
    note: str | None = None,  # PEP 604 on purpose: the CLI normalizes it for NeMo-Run
    extra: Optional[ToyPruningConfig] = None,  # prune's pattern: an optional config object
) -> dict:
    """A stand-in stage that records its call.

    Args:
        output_dir: where it would write.
    """
    if steps < 0:  # the stage's own validation
        raise ValueError(f"steps={steps} must be >= 0")
    CALLS.append(
        dict(output_dir=output_dir, steps=steps, lr=lr, cfg=pruning_config, note=note, extra=extra)
    )
    return {"ok": True}


@renamed(n_steps="steps", **{"pruning_config.hidden": "pruning_config.target_hidden_size"})
def toy_renamed(output_dir: str, steps: int = 3, pruning_config: ToyPruningConfig = ToyPruningConfig()) -> dict:
    """A stand-in stage with renamed arguments."""
    return toy_stage(output_dir, steps=steps, pruning_config=pruning_config)


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def toy(monkeypatch):
    import nemo_run.cli.api as nr_api

    monkeypatch.setitem(cli.STAGES, "toy", cli.Stage(f"{__name__}:toy_stage", "a toy stage"))
    monkeypatch.setitem(cli.STAGES, "toy_renamed", cli.Stage(f"{__name__}:toy_renamed", "a renamed toy"))
    # NeMo-Run remembers a confirmation answer for the whole process; start each test afresh.
    monkeypatch.setattr(nr_api, "NEMORUN_SKIP_CONFIRMATION", None)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    CALLS.clear()
    yield
    CALLS.clear()


def test_stage_runs_in_this_process_with_typed_and_dotted_overrides(toy, capsys):
    rc = cli.main(
        [
            "toy",
            "output_dir=/tmp/somewhere",
            "steps=7",
            "lr=0.5",
            "pruning_config.target_hidden_size=32",
            "pruning_config.drop_layers=[1,3]",
            "note=hello",
            "extra.target_mamba_num_heads=4",
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert len(CALLS) == 1
    call = CALLS[0]
    assert call["output_dir"] == "/tmp/somewhere"
    assert call["steps"] == 7 and isinstance(call["steps"], int)
    assert call["lr"] == 0.5
    assert call["cfg"] == ToyPruningConfig(target_hidden_size=32, drop_layers=[1, 3])
    assert call["note"] == "hello"
    assert call["extra"] == ToyPruningConfig(target_mamba_num_heads=4)


def test_config_objects_are_not_shared(toy, capsys):
    # Two arguments of one config type, and two runs in one process, each get their own object
    # (NeMo-Run 0.11 caches parsed values; nemo_minitron.cli parses without that cache).
    args = ["toy", "output_dir=o", "pruning_config.target_hidden_size=1"]
    assert cli.main([*args, "extra.target_mamba_num_heads=2"]) == 0, capsys.readouterr()
    assert cli.main(["toy", "output_dir=o", "pruning_config.drop_layers=[0]"]) == 0
    first, second = CALLS
    assert first["cfg"] == ToyPruningConfig(target_hidden_size=1)
    assert first["extra"] == ToyPruningConfig(target_mamba_num_heads=2)
    assert second["cfg"] == ToyPruningConfig(drop_layers=[0])
    assert second["extra"] is None


def test_optional_config_object_defaults_to_none(toy, capsys):
    assert cli.main(["toy", "output_dir=o"]) == 0, capsys.readouterr()
    assert CALLS[0]["extra"] is None
    assert CALLS[0]["cfg"] == ToyPruningConfig()


def test_dryrun_does_not_run(toy, capsys):
    rc = cli.main(["toy", "output_dir=o", "steps=11", "--dryrun"])
    out = capsys.readouterr().out
    assert rc == 0
    assert CALLS == []
    assert "Dry run" in out and "11" in out


def test_bad_value_fails_with_nonzero_status(toy, capsys):
    rc = cli.main(["toy", "output_dir=o", "steps=many"])
    assert rc != 0
    assert CALLS == []
    rc = cli.main(["toy", "steps=2"])  # output_dir is required
    assert rc != 0
    assert CALLS == []


def test_unknown_argument_names_the_stage_and_the_closest_name(toy, capsys):
    assert cli.main(["toy", "output_dir=o", "stpes=2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "toy: unknown argument 'stpes' (did you mean 'steps'?)"
    assert "Unexpected error" not in err and "0x" not in err
    assert CALLS == []


def test_unknown_dotted_field_names_the_field(toy, capsys):
    assert cli.main(["toy", "output_dir=o", "pruning_config.target_hiden_size=8"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "toy: unknown argument 'pruning_config.target_hiden_size' "
        "(did you mean 'pruning_config.target_hidden_size'?)"
    )
    assert cli.main(["toy", "output_dir=o", "zzz=1"]) == 2
    assert capsys.readouterr().err.strip() == "toy: unknown argument 'zzz'"  # nothing close
    assert CALLS == []


def test_bad_value_names_the_stage_field_and_reason(toy, capsys):
    assert cli.main(["toy", "output_dir=o", "steps=many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("toy: bad value for 'steps': 'many' is not a valid int"), err
    assert cli.main(["toy", "output_dir=o", "pruning_config.target_hidden_size=big"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "toy: bad value for 'pruning_config.target_hidden_size': 'big' is not a valid int or None"
    assert CALLS == []


def test_renamed_argument_is_refused_before_parsing(toy, capsys):
    assert cli.main(["toy_renamed", "output_dir=o", "n_steps=4"]) == 2
    err = capsys.readouterr().err
    assert "argument 'n_steps' was renamed to 'steps'; use steps=..." in err
    assert cli.main(["toy_renamed", "output_dir=o", "pruning_config.hidden=4", "--dryrun"]) == 2
    assert "'pruning_config.hidden' was renamed to 'pruning_config.target_hidden_size'" in capsys.readouterr().err
    assert CALLS == []
    # The new names work, through the decorator (its annotations are resolved like any stage's).
    assert cli.main(["toy_renamed", "output_dir=o", "steps=4", "pruning_config.target_hidden_size=8"]) == 0
    assert CALLS[0]["steps"] == 4 and CALLS[0]["cfg"] == ToyPruningConfig(target_hidden_size=8)


def test_stage_refusal_is_one_plain_line(toy, capsys):
    assert cli.main(["toy", "output_dir=o", "steps=-1"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "toy: steps=-1 must be >= 0"
    assert "Unexpected error" not in err


def test_verbose_shows_the_traceback(toy):
    with pytest.raises(ValueError, match="must be >= 0"):
        cli.main(["toy", "output_dir=o", "steps=-1", "-v"])


def test_command_line_keys():
    args = ["a=1", "b.c=[1,2]", "d+=3", "--yaml", "x.yaml", "--factory", "tiny(output_dir=o)", "-v", "e = 2"]
    assert cli.command_line_keys(args) == ["a", "b.c", "d", "e"]


def test_terminal_asks_for_confirmation_unless_yes(toy, monkeypatch, capsys):
    import nemo_run.cli.api as nr_api

    monkeypatch.setattr(sys, "stdin", _FakeTTY("n\n"))
    assert cli.main(["toy", "output_dir=o"]) == 0
    assert CALLS == []  # answered "n"
    assert "Continue?" in capsys.readouterr().out

    monkeypatch.setattr(nr_api, "NEMORUN_SKIP_CONFIRMATION", None)
    monkeypatch.setattr(sys, "stdin", _FakeTTY(""))
    assert cli.main(["toy", "output_dir=o", "--yes"]) == 0
    assert len(CALLS) == 1


def test_stage_help_shows_arguments(toy, capsys):
    rc = cli.main(["toy", "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    for arg in ("output_dir", "steps", "pruning_config", "--dryrun", "--yaml", "--factory"):
        assert arg in out


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_every_stage_help_lists_all_its_arguments(stage, capsys, monkeypatch):
    import inspect

    monkeypatch.setenv("COLUMNS", "250")  # rich would otherwise wrap long argument names
    assert cli.main([stage, "--help"]) == 0
    out = capsys.readouterr().out
    for param in inspect.signature(cli.load_stage(stage)).parameters:
        assert param in out, (stage, param)


def test_registered_in_nemo_run_namespace(toy):
    import nemo_run as run

    fn = cli.load_stage("toy")
    assert fn is toy_stage  # the library function itself is the entrypoint
    entry = fn.cli_entrypoint
    assert (entry.name, entry.namespace) == ("toy", cli.NAMESPACE)
    assert fn.cli_entrypoint is cli.load_stage("toy").cli_entrypoint  # idempotent
    assert "toy_stage" in run.cli.list_entrypoints()[cli.NAMESPACE]


# ---------------------------------------------------------------------------------------------
# The real pretrain stage (configuration only: nothing is trained here)


def _to_yaml(tmp_path: Path, name: str, *args: str, stage: str = "pretrain") -> dict:
    out = tmp_path / f"{name}.yaml"
    proc = run_cli(stage, *args, "--to-yaml", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(out.read_text())


def test_pretrain_help_shows_arguments():
    import inspect

    from nemo_minitron.stages.pretrain import pretrain

    proc = run_cli("pretrain", "--help")
    assert proc.returncode == 0, proc.stderr
    for param in inspect.signature(pretrain).parameters:
        assert param in proc.stdout
    for option in ("--dryrun", "--yaml", "--factory", "--yes"):
        assert option in proc.stdout


def test_pretrain_dryrun_with_overrides_trains_nothing(tmp_path):
    out_dir = tmp_path / "teacher"
    proc = run_cli("pretrain", f"save_path={out_dir}", "train.max_steps=3", "train.seq_length=64", "--dryrun")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Dry run" in proc.stdout
    assert "max_steps" in proc.stdout and "seq_length" in proc.stdout
    assert not out_dir.exists()

    cfg = _to_yaml(tmp_path, "cfg", f"save_path={out_dir}", "train.max_steps=3", "train.seq_length=64")
    assert cfg == {
        "_target_": PRETRAIN_TARGET,
        "_partial_": True,
        "save_path": str(out_dir),
        "train": {"_target_": "nemo_minitron.stages.settings.PretrainTrain", "max_steps": 3, "seq_length": 64},
    }
    assert not out_dir.exists()


@pytest.mark.parametrize("stage,lr", [("distill", 1e-3), ("sft_kd", 5e-4), ("rpo", 1e-5), ("long_context", 1e-4),
                                      ("pretrain", 3e-3)])
def test_dotted_override_keeps_the_stage_defaults(stage, lr, tmp_path, capsys):
    """``optim.warmup_steps=3`` builds the stage's own optimizer settings class, so its other
    defaults (distill's lr 1e-3, rpo's 1e-5, ...) survive the override."""
    import importlib

    fn = cli.load_stage(stage)
    required = [f"{name}=x" for name, p in inspect.signature(fn).parameters.items()
                if p.default is inspect.Parameter.empty and name not in ("min_len", "max_len")]
    required += ["min_len=8", "max_len=16"] if stage == "long_context" else []
    out = tmp_path / "cfg.yaml"
    assert cli.main([stage, *required, "optim.warmup_steps=3", "train.max_steps=20", "--to-yaml", str(out)]) == 0
    cfg = yaml.safe_load(out.read_text())

    def build(node: dict):
        module, _, name = node["_target_"].rpartition(".")
        return getattr(importlib.import_module(module), name)(**{k: v for k, v in node.items() if k != "_target_"})

    optim, train = build(cfg["optim"]), build(cfg["train"])
    assert optim.warmup_steps == 3 and optim.lr == lr
    default_train = inspect.signature(fn).parameters["train"].default
    assert train.max_steps == 20 and train.micro_batch_size == default_train.micro_batch_size


def test_distill_dryrun_with_dotted_overrides_keeps_its_lr(tmp_path):
    proc = run_cli("distill", "teacher_path=t", "student_path=s", f"save_path={tmp_path / 'o'}",
                   "optim.warmup_steps=3", "--dryrun")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DistillOptim(warmup_steps=3)" in proc.stdout  # the class whose lr default is distill's 1e-3
    cfg = _to_yaml(tmp_path, "d", "teacher_path=t", "student_path=s", "save_path=o", "optim.warmup_steps=3",
                   stage="distill")
    assert cfg["optim"] == {"_target_": "nemo_minitron.stages.settings.DistillOptim", "warmup_steps": 3}
    from nemo_minitron.stages.distill import DistillOptim

    assert DistillOptim(warmup_steps=3).lr == 1e-3
    assert not (tmp_path / "o").exists()


def test_pretrain_yaml_plus_override(tmp_path):
    # configs/tiny.yaml has arch_name: tiny, the name of a registered recipe too: it must stay
    # a string (see nemo_minitron.nemorun.recipe), which the equality below checks.
    base = yaml.safe_load(TINY_YAML.read_text())
    assert base["arch_name"] == "tiny"
    cfg = _to_yaml(tmp_path, "cfg", "--yaml", str(TINY_YAML), "save_path=elsewhere", "train.seq_length=128")
    expected = {**base, "save_path": "elsewhere", "train": {**base["train"], "seq_length": 128}}
    assert cfg.pop("_target_") == PRETRAIN_TARGET
    assert cfg.pop("_partial_") is True
    assert cfg == expected


def test_tiny_factory_equals_tiny_yaml(tmp_path):
    from_factory = _to_yaml(tmp_path, "factory", "--factory", "tiny", "save_path=o")
    from_yaml = _to_yaml(tmp_path, "yaml", "--yaml", str(TINY_YAML), "save_path=o")
    assert from_factory == from_yaml


def test_tiny_recipe_is_a_partial_of_pretrain():
    import inspect

    import nemo_run as run

    from nemo_minitron.stages.pretrain import pretrain
    from recipes.tiny import tiny_pretrain

    recipe = tiny_pretrain(save_path="x")
    assert isinstance(recipe, run.Partial)
    assert recipe.__fn_or_cls__ is pretrain
    assert recipe.save_path == "x"
    # Every key of the YAML form is a real argument of the function.
    params = inspect.signature(pretrain).parameters
    assert set(yaml.safe_load(TINY_YAML.read_text())) <= set(params)


def test_register_all_for_nemo_command():
    import nemo_run as run

    loaded = cli.register_all(strict=True)
    assert set(loaded) == set(cli.STAGES)
    names = {e.name for e in run.cli.list_entrypoints()[cli.NAMESPACE].values()}
    assert set(cli.STAGES) <= names


def _nemo_entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == cli.NAMESPACE for ep in entry_points(group="nemo_run.cli"))


@pytest.mark.skipif(
    not _nemo_entry_point_installed(),
    reason="the nemo_run.cli entry point 'minitron' is not installed (pip install -e .)",
)
def test_nemo_minitron_through_nemo_run_cli(tmp_path):
    nemo = Path(sys.executable).parent / "nemo"
    env = dict(os.environ, COLUMNS="200", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [str(nemo), "minitron", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for name in cli.STAGES:
        assert name in proc.stdout
    proc = subprocess.run(
        [str(nemo), "minitron", "pretrain", f"save_path={tmp_path / 't'}", "--dryrun"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Dry run" in proc.stdout


CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
#: Each YAML file names the recipe factory it is a copy of, in its header comment.
_SOURCE = re.compile(r"Same configuration as `nemo-minitron (\w+) --factory (\w+)`")


def _yaml_source(path: Path) -> tuple:
    header = " ".join(line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#"))
    match = _SOURCE.search(header)
    assert match, (f"{path.relative_to(ROOT)} must name the recipe it copies: "
                   "'Same configuration as `nemo-minitron <stage> --factory <name>`'")
    return match.groups()


def _resolved(tmp_path: Path, stage: str, *args: str) -> dict:
    out = tmp_path / "resolved.yaml"
    assert cli.main([stage, *args, "--to-yaml", str(out)]) == 0
    return yaml.safe_load(out.read_text())


def test_every_yaml_config_equals_its_recipe(tmp_path):
    """Every file in configs/ resolves to exactly what the recipe factory it names resolves to, so
    that recipes/ stays the one home of the settings (a new YAML without a recipe fails here)."""
    assert len(CONFIGS) >= 9, CONFIGS
    for path in CONFIGS:
        stage, factory = _yaml_source(path)
        from_yaml = _resolved(tmp_path, stage, "--yaml", str(path))
        from_factory = _resolved(tmp_path, stage, "--factory", factory)
        assert from_yaml == from_factory, path.relative_to(ROOT)


def test_scale_yaml_plus_nested_override(tmp_path):
    cfg = _to_yaml(tmp_path, "o", "--yaml", str(ROOT / "configs" / "nemotron_h_8b_to_4b" / "prune.yaml"),
                   "model_path=/m/8b", "pruning_config.target_ffn_hidden_size=14336", stage="prune")
    assert cfg["model_path"] == "/m/8b"
    assert cfg["pruning_config"]["target_ffn_hidden_size"] == 14336
    assert cfg["pruning_config"]["target_hidden_size"] == 3072  # the rest of the recipe is kept


def test_recipe_stages_match_the_published_shapes():
    """The 8B -> 4B factory prunes to the paper's final candidate (hidden 3072, FFN 12288, 112 heads)."""
    from nemo_minitron.arch import PRESETS
    from recipes.scale import nemotron_h_8b_to_4b_distill, nemotron_h_8b_to_4b_prune

    prune = nemotron_h_8b_to_4b_prune(model_path="/m", data_path="/d", output_dir="/o")
    config = prune.pruning_config
    target = PRESETS["nemotron-h-8b"].replace(hidden_size=config.target_hidden_size,
                                             ffn_hidden_size=config.target_ffn_hidden_size,
                                             mamba_num_heads=config.target_mamba_num_heads)
    assert target == PRESETS["nemotron-h-4b"]
    distill = nemotron_h_8b_to_4b_distill(model_path="/m", data_path="/d", output_dir="/o")
    assert (distill.train.seq_length, distill.train.global_batch_size, distill.optim.warmup_steps) == (8192, 768, 60)
    assert distill.student_path == prune.save_path == "/o/01_pruned"


@pytest.mark.parametrize("name", ["nemotron_h_8b_to_4b", "mamba2_1.3b_to_780m"])
def test_pipeline_yaml_dryrun_prints_sbatch(tmp_path, name):
    proc = run_cli("pipeline", "--yaml", str(ROOT / "configs" / name / "pipeline.yaml"), "slurm.account=acct-x",
                   f"slurm.job_dir={tmp_path / 'jobs'}", "dryrun=true", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "#SBATCH --account=acct-x" in proc.stdout and "gpus-per-node=8" in proc.stdout


def test_pipeline_tiny_yaml_resolves(tmp_path):
    cfg = _to_yaml(tmp_path, "t", "--yaml", str(ROOT / "configs" / "pipeline_tiny.yaml"), "scale=0.05",
                   stage="pipeline")
    assert cfg["recipe"] == "tiny" and cfg["scale"] == 0.05 and cfg["launcher"] == "direct"
