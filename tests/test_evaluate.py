"""Evaluation: offline RULER generation and scoring, lm-eval on local tasks, speed, the report.

Runs offline on CPU with a tiny random NemotronH (hidden 64) and the default 32000-token
tokenizer. Scores of a random model are meaningless; the tests check shapes, sizes, ranges,
determinism and that nothing reaches the network.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
import socket
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import TINY_ARCH
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.evaluate import (CLOZE_MC, CORPUS_PPL, cloze_records, compare_speed,
                                    generate_ruler_samples, materialize_tasks, register_generation_task, run_lm_eval,
                                    run_ruler, score_all, score_part, string_match_all, string_match_part,
                                    unregister_local_task)
from nemo_minitron.evaluate.ruler import TASKS as RULER_TASKS
from nemo_minitron.evaluate.ruler import largest_fitting, size_sample
from nemo_minitron.models import build_model, save_checkpoint
from nemo_minitron.stages.eval import evaluate

ROOT = Path(__file__).resolve().parents[1]

ARCH_32K = dataclasses.replace(TINY_ARCH, vocab_size=32000).validate()


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Generated lm-eval task files go to a temporary cache, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NEMO_MINITRON_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def tokenizer():
    return load_default_tokenizer()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer):
    """Two tiny random NemotronH checkpoints (different seeds) with the default tokenizer."""
    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, seed in (("teacher", 0), ("student", 1)):
        model = build_model(ARCH_32K, seed=seed).eval()
        paths[name] = str(save_checkpoint(model, root / name, tokenizer=tokenizer))
    return paths


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(ARCH_32K, seed=0).eval()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------- RULER
@pytest.mark.parametrize("length", [512, 1024, 3000])
def test_ruler_prompts_fit_and_fill_their_length(tokenizer, length):
    samples = generate_ruler_samples(tokenizer, [length], samples_per_task=2, seed=0)
    assert {s.task for s in samples} == set(RULER_TASKS)
    for s in samples:
        prompt_tokens = len(tokenizer(s.prompt)["input_ids"])
        answer_tokens = len(tokenizer(" " + ", ".join(s.references), add_special_tokens=False)["input_ids"])
        assert prompt_tokens == s.prompt_tokens
        assert prompt_tokens + answer_tokens <= length, s.task
        assert prompt_tokens + s.max_new_tokens <= length, s.task
        assert s.max_new_tokens >= answer_tokens
        # The haystack is grown to the budget, not left short (units are at most ~30 tokens).
        assert prompt_tokens >= length - s.max_new_tokens - 40, (s.task, prompt_tokens, s.max_new_tokens)


def test_ruler_answers_are_in_the_prompt_and_well_defined(tokenizer):
    for s in generate_ruler_samples(tokenizer, [1024], samples_per_task=2, seed=3):
        context = s.prompt.rsplit("\n", 1)[0]
        for ref in s.references:
            assert ref in context, (s.task, ref)
        if s.task == "niah_single":
            assert len(s.references) == 1 and re.fullmatch(r"\d{7}", s.references[0])
            assert "The grass is green. The sky is blue." in s.prompt
        if s.task in ("niah_multivalue", "niah_multiquery"):
            assert len(set(s.references)) == 4
        if s.task == "vt":
            assert len(s.references) == 5 and f"VAR {s.references[0]} = " in s.prompt
        if s.task == "cwe":
            words = re.findall(r"\d+\. ([a-z]+)", context)
            counts = collections.Counter(words)
            top = {w for w, _ in counts.most_common(10)}
            assert top == set(s.references)
            assert min(counts[w] for w in top) > max(c for w, c in counts.items() if w not in top)
        if s.task == "fwe":
            words = context.split("coded words. ", 1)[1].split()
            counts = collections.Counter(w for w in words if w != "...")
            assert [w for w, _ in counts.most_common(3)] == s.references


def test_ruler_is_deterministic_per_seed(tokenizer):
    a = generate_ruler_samples(tokenizer, [512], samples_per_task=2, seed=7)
    b = generate_ruler_samples(tokenizer, [512], samples_per_task=2, seed=7)
    c = generate_ruler_samples(tokenizer, [512], samples_per_task=2, seed=8)
    assert [(s.prompt, s.references) for s in a] == [(s.prompt, s.references) for s in b]
    assert [s.prompt for s in a] != [s.prompt for s in c]
    assert a[0].prompt != a[1].prompt  # samples of one task differ


def test_ruler_too_short_length_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="does not fit in 64 tokens"):
        size_sample(RULER_TASKS["cwe"], tokenizer, 64, 0)
    with pytest.raises(ValueError, match="unknown RULER tasks"):
        generate_ruler_samples(tokenizer, [512], tasks=["qa_1"])


def test_largest_fitting_finds_the_boundary():
    for limit in (0, 1, 5, 99, 1000, 12345):
        for guess in (1, 10, 1000, 50000):
            assert largest_fitting(lambda n: n <= limit, guess) == limit
    assert largest_fitting(lambda n: False, 10) is None


def test_scorer_rewards_right_answers_only():
    refs = ["1234567", "Apple"]
    assert score_all("1234567 and apple", refs) == 1.0
    assert score_all("only 1234567", refs) == 0.5
    assert score_all("nothing", refs) == 0.0
    assert score_part("only 1234567", refs) == 1.0
    assert score_part("nothing", refs) == 0.0
    assert string_match_all(["1234567 apple", "apple"], [refs, refs]) == pytest.approx(0.75)
    assert string_match_part(["x", "apple"], [refs, refs]) == pytest.approx(0.5)


class _Oracle(nn.Module):
    """Stands in for a model: ``generate`` answers every known prompt with ``answers[prompt]``."""

    def __init__(self, tokenizer, answers: dict):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.tokenizer, self.answers = tokenizer, answers

    def generate(self, input_ids, max_new_tokens, **kwargs):
        prompt = self.tokenizer.decode(input_ids[0], skip_special_tokens=True)
        answer = self.tokenizer(self.answers[prompt], add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, answer[:, :max_new_tokens]], dim=1)


def test_run_ruler_scores_an_oracle_1_and_a_liar_less(tokenizer):
    lengths, tasks = [512], ["niah_multivalue", "vt", "fwe"]
    samples = generate_ruler_samples(tokenizer, lengths, tasks, samples_per_task=2, seed=0)
    decoded = {tokenizer.decode(tokenizer(s.prompt)["input_ids"], skip_special_tokens=True): s for s in samples}
    right = _Oracle(tokenizer, {p: " " + ", ".join(s.references) for p, s in decoded.items()})
    half = _Oracle(tokenizer, {p: " " + ", ".join(s.references[: len(s.references) // 2]) for p, s in decoded.items()})
    assert run_ruler(right, tokenizer, lengths, tasks, samples_per_task=2, seed=0) == {t: {512: 1.0} for t in tasks}
    partial = run_ruler(half, tokenizer, lengths, tasks, samples_per_task=2, seed=0)
    assert all(0.0 < partial[t][512] < 1.0 for t in tasks)


def test_run_ruler_generates_with_a_real_model(tiny_model, tokenizer):
    out = []
    scores = run_ruler(tiny_model, tokenizer, [256], ["niah_single", "vt"], samples_per_task=1,
                       max_new_tokens=8, samples_out=out)
    assert set(scores) == {"niah_single", "vt"}
    assert all(0.0 <= v[256] <= 1.0 for v in scores.values())
    assert all(isinstance(s.prediction, str) and s.prompt_tokens + s.max_new_tokens <= 256 for s in out)
    again = []
    run_ruler(tiny_model, tokenizer, [256], ["niah_single"], samples_per_task=1, max_new_tokens=8, samples_out=again)
    assert again[0].prediction == out[0].prediction  # greedy: same sample, same answer


# --------------------------------------------------------------------------- lm-eval
def test_cloze_records_are_deterministic_and_well_formed():
    docs = [" ".join(f"Document {d} says thing number {i} about topic {d}." for i in range(8)) for d in range(6)]
    items = cloze_records(docs, num_items=20, seed=1)
    assert items == cloze_records(docs, num_items=20, seed=1)
    assert items != cloze_records(docs, num_items=20, seed=2)
    assert len(items) == 20
    for item in items:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        doc = re.search(r"Document (\d+)", item["context"]).group(1)
        assert f"Document {doc} " in item["choices"][item["label"]]
        assert sum(f"Document {doc} " in c for c in item["choices"]) == 1


def test_materialized_tasks_are_local_yaml_with_absolute_data(tmp_path):
    register_generation_task("test_echo_yaml", [{"prompt": "Say yes:", "answer": "yes"}], overwrite=True)
    try:
        folders = materialize_tasks([CLOZE_MC, "test_echo_yaml"], root=tmp_path)
        again = materialize_tasks([CLOZE_MC, "test_echo_yaml"], root=tmp_path)
    finally:
        unregister_local_task("test_echo_yaml")
    assert folders == again
    for folder in folders:
        (config_file,) = folder.glob("*.yaml")
        config = yaml.safe_load(config_file.read_text())
        data = Path(config["dataset_kwargs"]["data_files"]["test"])
        assert config["dataset_path"] == "json" and data.is_absolute() and data.is_file()
        assert len(list(folder.glob("*.jsonl"))) == 1
    echo = yaml.safe_load((folders[1] / "test_echo_yaml.yaml").read_text())
    assert echo["output_type"] == "generate_until" and echo["metric_list"][0]["metric"] == "exact_match"


def test_lm_eval_runs_offline_on_local_tasks(checkpoints, no_network):
    records = [{"prompt": f"Repeat the word: {w}\nWord:", "answer": w} for w in ("cat", "dog", "sun")]
    register_generation_task("test_echo", records, max_gen_toks=4, overwrite=True)
    try:
        scores = run_lm_eval(checkpoints["teacher"], tasks=[CORPUS_PPL, CLOZE_MC, "test_echo"], limit=3,
                             batch_size=4, max_length=256)
    finally:
        unregister_local_task("test_echo")
    assert set(scores) == {CORPUS_PPL, CLOZE_MC, "test_echo"}
    ppl = scores[CORPUS_PPL]
    assert ppl["bits_per_byte"] > 0 and ppl["word_perplexity"] > 1 and ppl["num_samples"] == 3
    mc = scores[CLOZE_MC]
    assert 0.0 <= mc["acc"] <= 1.0 and 0.0 <= mc["acc_norm"] <= 1.0 and mc["num_samples"] == 3
    assert scores["test_echo"]["exact_match"] in (0.0, 1 / 3, 2 / 3, 1.0)


# --------------------------------------------------------------------------- speed
def test_compare_speed_returns_positive_figures_and_ratios(tiny_model):
    other = build_model(dataclasses.replace(ARCH_32K, hidden_size=32, mamba_num_heads=4), seed=1).eval()
    result = compare_speed({"teacher": tiny_model, "student": other}, input_len=32, output_len=4, repeats=2,
                           baseline="teacher")
    assert result["baseline"] == "teacher"
    for name in ("teacher", "student"):
        r = result["models"][name]
        assert r["ttft_s"] > 0 and r["decode_tokens_per_s"] > 0 and r["total_s"] >= r["ttft_s"]
        assert len(r["timings"]) == 2
        assert all(math.isfinite(v) and v > 0 for v in result["ratios"][name].values())
    assert result["ratios"]["teacher"]["throughput_ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="output_len"):
        compare_speed({"teacher": tiny_model}, input_len=8, output_len=1)


def test_timed_generation_decodes_one_token_a_step_even_when_the_saved_config_says_no_cache(tiny_model):
    """A generation config with use_cache=False (saved by an attention-free student, or leaked into
    one) would make every decode step re-read the whole prompt: the speed figures must not depend on it."""
    from nemo_minitron.evaluate.speed import time_generate

    tiny_model.generation_config.use_cache = False
    lengths: list[int] = []
    hook = tiny_model.register_forward_hook(lambda m, args, kwargs, out: lengths.append(kwargs["input_ids"].shape[1]),
                                            with_kwargs=True)
    try:
        time_generate(tiny_model, torch.randint(0, 100, (1, 12)), 4)
    finally:
        hook.remove()
    assert lengths == [12, 1, 1, 1]


# --------------------------------------------------------------------------- report
def test_eval_stage_writes_json_markdown_and_png(checkpoints, tmp_path, no_network):
    out = tmp_path / "report"
    report = evaluate(checkpoints["student"], baseline_path=checkpoints["teacher"], output_dir=str(out),
                                 tasks=[CLOZE_MC], limit=2, ruler_lengths=[256], ruler_samples=1,
                                 ruler_tasks=["niah_single"], speed_input_len=16, speed_output_len=3,
                                 speed_repeats=1, device="cpu")
    data = json.loads((out / "eval_report.json").read_text())
    assert set(data["models"]) == {"baseline", "model"}
    for role in ("baseline", "model"):
        assert 0.0 <= data["models"][role]["lm_eval"][CLOZE_MC]["acc"] <= 1.0
        assert set(data["models"][role]["ruler"]["niah_single"]) == {"256"}
    assert data["speed"]["ratios"]["model"]["throughput_ratio"] > 0
    assert report["files"]["png"] == str(out / "eval_report.png")
    markdown = (out / "eval_report.md").read_text()
    for section in ("## Accuracy", "## RULER", "## Speed", "ratio model/baseline", CLOZE_MC, "niah_single"):
        assert section in markdown
    assert (out / "eval_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "eval_ruler_samples.jsonl").read_text().splitlines()) == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_eval_signature_parses_as_a_nemo_run_entrypoint(capsys):
    from nemo_minitron import cli

    code = cli.run_stage("eval", ["model_path=/x", "baseline_path=/y", "tasks=['minitron_cloze_mc']",
                                  "ruler_lengths=[512,1024]", "speed=false", "limit=4",
                                  "compare_paths={'pruned':'/z'}", "--dryrun"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "['minitron_cloze_mc']" in printed and "[512, 1024]" in printed and "{'pruned': '/z'}" in printed


def test_compare_stages_script_merges_students_into_one_table(checkpoints, tmp_path, no_network):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_stages", ROOT / "scripts" / "compare_stages.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    names = list(checkpoints)
    out = tmp_path / "cmp"
    argv = ["--teacher", checkpoints[names[0]], "--model", f"a={checkpoints[names[1]]}",
            "--model", f"b={checkpoints[names[0]]}", "--out", str(out), "--eval", "tasks=[]",
            "--eval", "ruler_lengths=[]", "--eval", "speed_input_len=16", "--eval", "speed_output_len=4",
            "--eval", "speed_repeats=1"]
    assert script.main(argv) == 0
    table = (out / "comparison.md").read_text()
    assert "| metric | teacher | a | b |" in table and "decode throughput vs teacher" in table
    assert (out / "a" / "eval_report.json").is_file() and (out / "b" / "eval_report.json").is_file()


def test_eval_stage_scores_the_checkable_instruction_tasks(checkpoints, tmp_path, no_network):
    from nemo_minitron.data.instruct_tasks import TASKS

    report = evaluate(checkpoints["student"], baseline_path=checkpoints["teacher"],
                                 output_dir=str(tmp_path / "ev"), tasks=[], ruler_lengths=[], speed=False,
                                 instruct_tasks=2)
    for role in ("model", "baseline"):
        instruct = report["models"][role]["instruct"]
        assert set(instruct["accuracy"]) == set(TASKS) and instruct["n_per_task"] == {t: 2 for t in TASKS}
        assert instruct["mean_accuracy"] == 0.0  # random weights answer nothing right
        assert all(v > 0 for v in instruct["answer_nll"].values())
    text = (tmp_path / "ev" / "eval_report.md").read_text()
    assert "## Checkable instruction tasks" in text
    # random weights answer nothing: a sentence says so instead of a table of zeros
    assert "| **mean** |" not in text and "scores 0.000 for baseline and model" in text


def _synthetic_report(ruler: float, instruct: float) -> dict:
    def model(bpb: float, params: int, hellaswag: float) -> dict:
        return {"path": "x", "num_params": params,
                "lm_eval": {CORPUS_PPL: {"bits_per_byte": bpb},
                            "hellaswag": {"acc_norm": hellaswag, "acc_norm_stderr": 0.02, "num_samples": 100.0}},
                "ruler": {"niah_single": {"512": ruler}, "vt": {"512": 0.0}}, "ruler_average": {"512": ruler / 2},
                "instruct": {"accuracy": {"arith": instruct, "copy": 0.0}, "mean_accuracy": instruct / 2,
                             "n_per_task": {"arith": 4, "copy": 4}}}

    return {"models": {"baseline": model(2.0, 20_000_000, 0.40), "model": model(2.2, 10_000_000, 0.36)},
            "speed": {"settings": {"input_len": 64, "output_len": 8, "batch_size": 1, "repeats": 1, "device": "cpu"},
                      "models": {"baseline": {"decode_tokens_per_s": 100.0, "ttft_s": 0.2},
                                 "model": {"decode_tokens_per_s": 150.0, "ttft_s": 0.1}}}}


def test_report_leads_with_what_the_run_shows():
    from nemo_minitron.evaluate.render import to_markdown

    text = to_markdown(_synthetic_report(ruler=0.5, instruct=0.25))
    head = text.split("## What this run shows")[1].split("\n## ")[0]
    assert text.index("## What this run shows") < text.index("## Standard benchmarks")
    assert "held-out bits per byte (lower is better)**: baseline 2.000 vs model 2.200" in head
    assert "share of the baseline's benchmark average kept by model**: 90.0%" in head
    assert "parameters**: baseline 20,000,000 vs model 10,000,000 (model/baseline 0.50x)" in head
    assert "decode throughput**: baseline 100.0 tokens/s vs model 150.0 tokens/s (model/baseline 1.50x)" in head
    # non-zero cells keep their tables
    assert "| niah_single |" in text and "| **mean** |" in text


def test_tables_of_zeros_become_a_sentence_that_says_why():
    from nemo_minitron.evaluate.render import to_markdown

    text = to_markdown(_synthetic_report(ruler=0.0, instruct=0.0))
    assert "| niah_single |" not in text and "Every RULER cell (niah_single, vt) is 0.000 for baseline and model" in text
    assert "| **mean** |" not in text and "Every instruction task (arith, copy) scores 0.000" in text


def test_report_with_a_pruned_model_says_how_much_of_the_gap_distillation_closed():
    from nemo_minitron.evaluate.render import to_markdown, to_png

    report = _synthetic_report(ruler=0.5, instruct=0.25)
    pruned = json.loads(json.dumps(report["models"]["model"]))
    pruned["lm_eval"][CORPUS_PPL]["bits_per_byte"] = 3.0  # the pruning opened a 1.0 gap; the model is 0.2 off
    pruned["lm_eval"]["hellaswag"]["acc_norm"] = 0.30
    report["models"] = {"baseline": report["models"]["baseline"], "pruned": pruned, "model": report["models"]["model"]}
    report["speed"]["models"]["pruned"] = {"decode_tokens_per_s": 150.0, "ttft_s": 0.1}
    report["speed"].update(baseline="baseline", ratios={
        r: {"throughput_ratio": 1.5, "ttft_ratio": 0.5, "ttft_speedup": 2.0} for r in ("pruned", "model")})
    text = to_markdown(report)
    head = text.split("## What this run shows")[1].split("\n## ")[0]
    assert "baseline 2.000 vs pruned 3.000 vs model 2.200" in head
    assert "bits per byte: the model closes 80% of the gap that pruned opened** (pruned +1.000, model +0.200" in head
    assert "benchmark average: the model closes 60% of the gap that pruned opened" in head
    assert "kept by pruned**: 75.0%" in head and "kept by model**: 90.0%" in head
    assert "(pruned/baseline 0.50x, model/baseline 0.50x)" in head
    assert "| metric | baseline | pruned | model | ratio pruned/baseline | ratio model/baseline |" in text
    assert to_png(report)[:8] == b"\x89PNG\r\n\x1a\n"
    # a gap within two standard errors of the difference (2 x hypot(0.02, 0.02) = 0.057) is not closed either
    pruned["lm_eval"]["hellaswag"]["acc_norm"] = 0.35
    head = to_markdown(report).split("## What this run shows")[1].split("\n## ")[0]
    assert "benchmark average: the model" not in head
    assert ("benchmark average: the gap that pruned opened (-0.050) is within two standard errors of the "
            "difference (0.057), so no gap closure is claimed**") in head
    # a middle model better than the baseline opened no gap: nothing to close is claimed
    pruned["lm_eval"]["hellaswag"]["acc_norm"] = 0.45
    assert "benchmark average: the model" not in to_markdown(report)
    pruned["lm_eval"][CORPUS_PPL]["bits_per_byte"] = 2.1  # the model (2.2) ends further off than pruned
    assert "bits per byte: the model widens (negative share) -100% of the gap" in to_markdown(report)


def test_eval_stage_measures_named_extra_models_between_baseline_and_model(checkpoints, tmp_path, no_network):
    with pytest.raises(ValueError, match="compare_paths name 'model'"):
        evaluate(checkpoints["student"], compare_paths={"model": checkpoints["teacher"]}, output_dir=str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="compare_paths.pruned"):
        evaluate(checkpoints["student"], compare_paths={"pruned": str(tmp_path / "missing")},
                 output_dir=str(tmp_path / "x"))
    report = evaluate(checkpoints["student"], baseline_path=checkpoints["teacher"], output_dir=str(tmp_path / "ev"),
                      compare_paths={"pruned": checkpoints["student"]}, tasks=[CORPUS_PPL], limit=2, ruler_lengths=[],
                      speed_input_len=16, speed_output_len=3, speed_repeats=1, device="cpu")
    assert list(report["models"]) == ["baseline", "pruned", "model"]
    assert set(report["speed"]["ratios"]) == {"baseline", "pruned", "model"}
    # the same checkpoint measured twice gives the same held-out numbers
    assert report["models"]["pruned"]["lm_eval"][CORPUS_PPL] == report["models"]["model"]["lm_eval"][CORPUS_PPL]
    assert "baseline" in (tmp_path / "ev" / "eval_report.md").read_text().split("## What this run shows")[1]


def test_benchmarks_at_chance_are_said_to_be_at_chance():
    from nemo_minitron.evaluate.render import to_markdown

    report = _synthetic_report(ruler=0.5, instruct=0.25)
    assert "within two standard errors of chance" not in to_markdown(report)  # 0.40 and 0.36 vs 0.25 +- 0.04
    # one task at chance among others that are not: named under the table, the averages still claimed
    report["models"]["model"]["lm_eval"]["piqa"] = {"acc": 0.53, "acc_stderr": 0.05, "num_samples": 100.0}
    report["models"]["baseline"]["lm_eval"]["piqa"] = {"acc": 0.47, "acc_stderr": 0.05, "num_samples": 100.0}
    text = to_markdown(report)
    assert ("Every model is within two standard errors of chance on piqa (chance 0.50): that task does not "
            "separate these models") in text and "kept by model" in text
    for role in ("baseline", "model"):
        del report["models"][role]["lm_eval"]["piqa"]
    for role, value in (("baseline", 0.27), ("model", 0.23)):
        report["models"][role]["lm_eval"]["hellaswag"]["acc_norm"] = value
    text = to_markdown(report)
    assert ("standard benchmark average (1 tasks) (every model within two standard errors of chance on every task)"
            in text)
    assert "Every model is within two standard errors of chance on every task (chance: hellaswag 0.25)" in text
    head = text.split("## What this run shows")[1].split("\n## ")[0]
    assert "kept by model" not in head and "no benchmark share or gap closure is claimed" in head
    # with a pruned model between them, chance-level averages claim no gap closure either (bits/byte still does)
    pruned = json.loads(json.dumps(report["models"]["model"]))
    pruned["lm_eval"]["hellaswag"]["acc_norm"], pruned["lm_eval"][CORPUS_PPL]["bits_per_byte"] = 0.22, 3.0
    report["models"] = {"baseline": report["models"]["baseline"], "pruned": pruned, "model": report["models"]["model"]}
    head = to_markdown(report).split("## What this run shows")[1].split("\n## ")[0]
    assert "benchmark average: the model" not in head and "bits per byte: the model closes" in head
