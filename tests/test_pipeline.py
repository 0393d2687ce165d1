"""The base-to-instruct pipeline: recipes, Slurm dry run, end to end with skip-on-rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_minitron.arch import preset
from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR
from nemo_minitron.stages.pipeline import pipeline
from recipes import PIPELINES
from recipes.scale import MAMBA2_1P3B_TO_780M, NEMOTRON_H_8B_TO_4B

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "nemo_minitron.cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_real_scale_recipes_prune_to_the_published_shapes() -> None:
    assert NEMOTRON_H_8B_TO_4B.pruning.target_widths(preset("nemotron-h-8b")) == preset("nemotron-h-4b")
    assert MAMBA2_1P3B_TO_780M.pruning.target_widths(preset("mamba2-1.3b")) == preset("mamba2-780m")
    NEMOTRON_H_8B_TO_4B.pruning.check(preset("nemotron-h-8b"))
    MAMBA2_1P3B_TO_780M.pruning.check(preset("mamba2-1.3b"))
    # Paper section 4.2: sequence 8192, batch 768, 60 warm-up steps, ~380B tokens.
    r = NEMOTRON_H_8B_TO_4B
    assert (r.seq_length, r.global_batch_size, r.warmup_steps) == (8192, 768, 60)
    assert abs(r.max_steps * r.global_batch_size * r.seq_length / 1e9 - 380) < 1


def test_bad_pipeline_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recipe="):
        pipeline(recipe="nope", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="launcher="):
        pipeline(output_dir=str(tmp_path), launcher="k8s")
    with pytest.raises(ValueError, match="model_path"):
        pipeline(recipe="nemotron_h_8b_to_4b", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="only="):
        pipeline(output_dir=str(tmp_path), only=["bogus"])
    assert set(PIPELINES) == {"tiny", "smollm2", "nemotron_h_8b_to_4b", "mamba2_1.3b_to_780m"}


def test_smollm2_recipe_starts_from_the_real_weights_and_prunes_every_axis(tmp_path: Path) -> None:
    from nemo_minitron.stages.pipeline import step_builder
    from recipes.smollm2 import SMOLLM2_PRUNING

    steps = step_builder("smollm2")(tmp_path, scale=0.01)
    assert [s.name for s in steps] == ["import", "prune", "distill", "sft_kd_1", "sft_kd_2", "rpo_1", "rpo_2",
                                       "long_context", "eval"]
    assert steps[0].kwargs["source"] == "smollm2-135m"
    source = preset("smollm2-135m")
    SMOLLM2_PRUNING.check(source)
    target = SMOLLM2_PRUNING.target_widths(source).replace(pattern=source.pattern[:2 * 24])
    assert (target.hidden_size, target.ffn_hidden_size, target.num_attention_heads, target.num_layers) == (
        480, 1024, 6, 24)
    # SmolLM2-Instruct is its own SFT-KD teacher and the evaluation's baseline.
    by_name = {s.name: s for s in steps}
    assert by_name["sft_kd_1"].kwargs["teacher_path"] == by_name["eval"].kwargs["baseline_path"] == str(
        tmp_path / "00_smollm2")
    assert by_name["eval"].output == tmp_path / "08_eval" / "eval_report.json"


def test_slurm_dry_run_prints_the_sbatch_script(tmp_path: Path) -> None:
    result = _cli("pipeline", "recipe=nemotron_h_8b_to_4b", f"output_dir={tmp_path / 'out'}",
                  "model_path=/lustre/ckpt/nemotron-h-8b", "data_path=/lustre/data/train.jsonl",
                  "launcher=slurm", "slurm.account=acct42", "slurm.partition=batch", "slurm.nodes=2",
                  "slurm.gpus_per_node=8", f"slurm.job_dir={tmp_path / 'jobs'}",
                  "slurm.container_mounts=['/lustre:/lustre']", "dryrun=true", "--yes")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for expected in ("#SBATCH --account=acct42", "#SBATCH --partition=batch", "#SBATCH --nodes=2",
                     "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8", "/lustre:/lustre",
                     "--container-image", "Task prune", "Task distill", "Task eval"):
        assert expected in out, expected
    assert not (tmp_path / "out" / "01_pruned").exists()  # nothing ran


def test_the_demo_prunes_the_shipped_teacher_to_fixed_fractions_of_any_teacher(tmp_path: Path) -> None:
    from recipes.tiny import checkpoint_arch, demo_pruning, tiny_steps

    teacher = checkpoint_arch(SHIPPED_TEACHER_DIR)
    assert teacher == preset("teacher")  # what ships is what the recipe trains
    config = demo_pruning(teacher)
    assert (config.target_hidden_size, config.target_ffn_hidden_size, config.target_mamba_num_heads) == (256, 768, 12)
    assert 0.6 < config.target_widths(teacher).num_params() / teacher.num_params() < 0.7
    other = demo_pruning(preset("tiny"))  # another shape: the same fractions, Mamba heads a multiple of its groups
    assert (other.target_hidden_size, other.target_ffn_hidden_size, other.target_mamba_num_heads) == (208, 608, 12)
    steps = {s.name: s for s in tiny_steps(tmp_path, scale=0.01)}
    assert "teacher" not in steps and steps["prune"].kwargs["model_path"] == str(SHIPPED_TEACHER_DIR)
    with pytest.raises(FileNotFoundError, match="teacher_dir=.*holds no finished checkpoint"):
        tiny_steps(tmp_path, teacher_dir=str(tmp_path / "nothing"))


def test_tiny_pipeline_end_to_end_then_skips_finished_stages(tmp_path: Path) -> None:
    out = tmp_path / "pipe"
    first = pipeline(output_dir=str(out), scale=0.005)  # from the shipped teacher: nothing pretrains
    assert all(first["finished"].values()), first
    assert first["ran"] == [name for name in first["finished"]] and "teacher" not in first["ran"]
    compression = json.loads((out / "03_eval_distilled" / "eval_report.json").read_text())
    assert list(compression["models"]) == ["baseline", "pruned", "model"]
    assert compression["models"]["baseline"]["path"] == str(SHIPPED_TEACHER_DIR)
    assert compression["models"]["pruned"]["num_params"] == compression["models"]["model"]["num_params"]
    assert compression["models"]["model"]["num_params"] < 0.7 * compression["models"]["baseline"]["num_params"]
    assert "## What this run shows" in (out / "03_eval_distilled" / "eval_report.md").read_text()
    report = json.loads((out / "10_eval" / "eval_report.json").read_text())
    assert report["baseline_path"] == str(out / "04_instruct_teacher")  # the final model vs the instruct teacher
    assert set(report["models"]["model"]["instruct"]["accuracy"]) == set(report["models"]["baseline"]["instruct"]["accuracy"])
    for stage_dir in ("01_pruned", "02_distilled", "04_instruct_teacher", "05_sft_kd_1", "06_sft_kd_2", "07_rpo_1",
                      "08_rpo_2", "09_long_context"):
        assert (out / stage_dir / "config.json").is_file(), stage_dir
        assert not Path(f"{out / stage_dir}.work").exists(), stage_dir  # finished stages drop their work folder
    assert (out / "07_rpo_1" / "rpo_pairs.jsonl").is_file()  # sampled pairs are kept with the model
    second = pipeline(output_dir=str(out), scale=0.005)
    assert second["ran"] == [] and set(second["skipped"]) == set(first["finished"])
