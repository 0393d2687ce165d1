"""The ablation script (issue #8): shapes it compares, its verdict logic, and a --quick run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_minitron.ablations import build_variants
from nemo_minitron.ablations.report import Stats, order, speed_order, tokens_to_match, verdict
from nemo_minitron.ablations.variants import block_params, matching_width_config, pruned_arch
from nemo_minitron.arch import PRESETS, HybridArch
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.models import build_model, save_checkpoint
from nemo_minitron.prune.importance import ImportanceScores
from nemo_minitron.stages.ablations import ablations

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SMALL = HybridArch(pattern="M-*M-", hidden_size=32, vocab_size=32000, ffn_hidden_size=64, num_attention_heads=4,
                   num_query_groups=2, attention_head_dim=8, mamba_num_heads=8, mamba_head_dim=8,
                   mamba_num_groups=2, mamba_state_dim=8).validate()


def _layer_scores(arch: HybridArch) -> ImportanceScores:
    """Scores where later layers matter more (all that build_variants needs to pick depth)."""
    import torch

    scores = ImportanceScores(arch=arch)
    scores.layers = {"kl": torch.arange(arch.num_layers, dtype=torch.float),
                     "cosine": torch.arange(arch.num_layers, 0, -1, dtype=torch.float)}
    return scores


def test_width_student_matches_depth_student_block_params() -> None:
    tiny = PRESETS["tiny"]
    scores = _layer_scores(tiny)
    variants = {v.name: v for v in build_variants(tiny, scores)}
    depth = block_params(pruned_arch(scores, variants["depth-kl"].config))
    width = block_params(pruned_arch(scores, variants["width"].config))
    assert abs(width - depth) / depth <= 0.02
    assert variants["width"].config.target_hidden_size is None  # blocks are matched, embeddings kept
    heads = pruned_arch(scores, variants["mamba-heads"].config)
    channels = pruned_arch(scores, variants["mamba-channels"].config)
    assert heads.mamba_num_heads == tiny.mamba_num_heads // 2 and channels.mamba_head_dim == tiny.mamba_head_dim // 2
    assert abs(block_params(heads) - block_params(channels)) / block_params(channels) < 0.01
    assert pruned_arch(scores, variants["depth-kl"].config).pattern != pruned_arch(
        scores, variants["depth-cosine"].config).pattern  # the two metrics disagree in this fixture
    assert variants["width-random-init"].random_init and variants["width-random-init"].config == variants["width"].config


def test_matching_width_prefers_balanced_shrink() -> None:
    tiny = PRESETS["tiny"]
    config = matching_width_config(tiny, block_params(tiny) // 2)
    f_ffn = config.target_ffn_hidden_size / tiny.ffn_hidden_size
    f_heads = config.target_mamba_num_heads / tiny.mamba_num_heads
    assert abs(f_ffn - f_heads) <= 0.25


def test_halving_needs_heads_divisible_per_group() -> None:
    odd = SMALL.replace(mamba_num_heads=6, mamba_num_groups=2)
    with pytest.raises(ValueError, match="cannot be halved within every group"):
        build_variants(odd, _layer_scores(odd))


def test_order_and_verdict() -> None:
    assert order(Stats(5.0, 0.01, 3), Stats(5.2, 0.01, 3)) == -1
    assert order(Stats(5.0, 0.2, 3), Stats(5.1, 0.2, 3)) == 0  # gap inside the spread
    assert order(Stats(5.3, 0.0, 1), Stats(5.0, 0.0, 1)) == 1
    assert verdict(-1, -1) == "agrees"
    assert verdict(-1, 1) == "DISAGREES"
    assert verdict(-1, 0).startswith("inconclusive")


def test_speed_order_ties_within_the_noise_of_identical_models() -> None:
    assert speed_order(1.41, 1.38) == 0  # the same 7 layers measured twice on the shipped teacher
    assert speed_order(1.59, 1.37) == -1 and speed_order(1.37, 1.59) == 1  # 16 % apart: clearly faster
    assert speed_order(1.15, 1.0) == 0 and speed_order(1.16, 1.0) == -1  # the edge is SPEED_TIE
    assert speed_order(None, 1.2) == 0  # unmeasured: no claim


def test_tokens_to_match_reads_the_curve() -> None:
    runs = [{"variant": "width", "val_loss": 6.0, "seed": 0},
            {"variant": "rand", "val_loss": 7.0, "seed": 0, "curve": [
                {"step": 10, "tokens": 100, "val_loss": 7.5}, {"step": 20, "tokens": 200, "val_loss": 6.2},
                {"step": 30, "tokens": 300, "val_loss": 5.9}]}]
    match = tokens_to_match({"runs": runs, "pruned_reference": "width", "tokens_per_run": 100})
    assert match["tokens"] == 300 and match["ratio"] == 3.0
    runs[1]["curve"][-1]["val_loss"] = 6.1
    never = tokens_to_match({"runs": runs, "pruned_reference": "width", "tokens_per_run": 100})
    assert never["ratio"] is None and never["lower_bound_ratio"] == 3.0


def test_quick_run_end_to_end_and_resume(tmp_path, monkeypatch) -> None:
    teacher = tmp_path / "teacher"
    save_checkpoint(build_model(SMALL, seed=0), teacher, tokenizer=load_default_tokenizer())
    out, docs = tmp_path / "abl", tmp_path / "docs"
    results = ablations(str(out), teacher_path=str(teacher), quick=True, docs_dir=str(docs), progress=False)
    names = set(results["variants"])
    assert {"width", "depth-kl", "depth-cosine", "mamba-heads", "mamba-channels", "mamba-heads-z",
            "mamba-heads-out_proj", "mamba-heads-flap", "width-random-init"} == names
    assert len(results["runs"]) == len(names) + 1  # one seed each + the random-init long run
    assert {f["finding"] for f in results["findings"]} == {"1", "2", "3", "4", "5", "6"}
    assert set(results["speed"]["ratios"]) == {"teacher"} | (names - {"width-random-init"})
    long_run = next(r for r in results["runs"] if "curve" in r)
    assert [p["step"] for p in long_run["curve"]] == [3, 6]  # validated every `steps` up to match_factor x
    for folder in (out, docs):
        text = (folder / "results.md").read_text()
        assert "| 1 | width-only vs depth-only" in text and (folder / "ablations.png").stat().st_size > 10_000
        assert text.startswith("# Reproducing the paper's ablations on `teacher`\n")
    assert not (out / "work").exists() or not any((out / "work").iterdir())  # weights dropped after each run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["variants"]["width"]["block_params"] == results["variants"]["width"]["block_params"]

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun must reuse the finished runs")

    monkeypatch.setattr("nemo_minitron.stages.distill.distill", no_training)
    again = ablations(str(out), teacher_path=str(teacher), quick=True, progress=False)
    assert [r["val_loss"] for r in again["runs"]] == [r["val_loss"] for r in results["runs"]]
    with pytest.raises(ValueError, match="other settings"):
        ablations(str(out), teacher_path=str(teacher), quick=True, steps=4, progress=False)


def test_script_help() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ablations.py"), "--help"], capture_output=True,
                          text=True, check=True)
    assert "--quick" in proc.stdout and "--seeds" in proc.stdout


def test_cli_stage_resolves_without_running(tmp_path, capsys) -> None:
    from nemo_minitron import cli

    assert cli.main(["ablations", f"output_dir={tmp_path / 'a'}", "quick=true", "num_seeds=2", "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert "num_seeds" in out and "2" in out and not (tmp_path / "a").exists()


def test_hand_written_discussion_survives_a_rerun(tmp_path) -> None:
    from nemo_minitron.ablations.report import DISCUSSION_MARKER, kept_discussion

    doc = tmp_path / "results.md"
    assert kept_discussion(doc) == ""
    doc.write_text("old tables\n" + DISCUSSION_MARKER + "\nwhy width lost here\n")
    assert kept_discussion(doc) == "\n" + DISCUSSION_MARKER + "\nwhy width lost here\n"


def test_report_names_the_shipped_teacher_and_hides_the_machines_paths(tmp_path, monkeypatch) -> None:
    from nemo_minitron.ablations.report import shown_path, teacher_label
    from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR

    assert teacher_label(str(SHIPPED_TEACHER_DIR)) == "the shipped teacher"
    assert teacher_label(str(tmp_path / "my-hybrid")) == "`my-hybrid`"
    monkeypatch.chdir(tmp_path)
    assert shown_path(str(tmp_path / "runs" / "teacher")) == "runs/teacher"
    assert shown_path("/elsewhere/teacher") == "/elsewhere/teacher"
