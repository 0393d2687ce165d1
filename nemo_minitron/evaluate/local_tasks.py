"""Offline lm-eval tasks: their data and YAML are generated at run time into the cache.

lm-eval reads local tasks from YAML files (``TaskManager(include_path=...)``) whose data comes
from ``datasets.load_dataset("json", data_files=...)``. That loader needs absolute paths, so the
files cannot be packaged: each task's records and YAML are (re)written deterministically into
``cache_dir()/lm_eval_tasks/<task>/``. The data file name carries a hash of its content, so a
changed task never reuses a stale ``datasets`` cache, and an unchanged one is not rewritten.

Built-in tasks (no hub, built from the held-out split of the offline corpus):

* ``minitron_corpus_ppl``: rolling log-likelihood of whole validation documents
  (``word_perplexity``, ``byte_perplexity``, ``bits_per_byte``).
* ``minitron_cloze_mc``: choose the true next sentence of a passage among 4 (3 distractor
  sentences from other documents, of similar length); ``acc`` / ``acc_norm``, chance 0.25.

Other modules add tasks with :func:`register_local_task`, or for checkable instruction data
(``{"prompt", "answer"}`` records, exact match) with :func:`register_generation_task`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from nemo_minitron.evaluate._io import write_if_changed

TASKS_SUBDIR = "lm_eval_tasks"
CORPUS_PPL = "minitron_corpus_ppl"
CLOZE_MC = "minitron_cloze_mc"

DATASETS_CACHE = ".datasets_cache"

Records = List[Dict[str, Any]]
#: A task builder returns the task's lm-eval YAML config (without ``dataset_path`` /
#: ``dataset_kwargs`` / split keys, which are filled in here) and its records.
TaskBuilder = Callable[[], Tuple[Dict[str, Any], Records]]


@dataclass(frozen=True)
class LocalTask:
    """A task whose YAML and data are generated locally (see module docstring)."""

    name: str
    build: TaskBuilder
    description: str = ""


_REGISTRY: Dict[str, LocalTask] = {}


def register_local_task(name: str, build: TaskBuilder, description: str = "", overwrite: bool = False) -> None:
    """Make ``name`` available to :func:`materialize_tasks` (and so to ``run_lm_eval``)."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(f"task name {name!r} may only use letters, digits, '_' and '-'")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"local task {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = LocalTask(name=name, build=build, description=description)


def unregister_local_task(name: str) -> None:
    """Remove a registered task (tests, or replacing a task under another name)."""
    _REGISTRY.pop(name, None)


def local_task_names() -> List[str]:
    """Names of every registered local task, built-in ones first."""
    return list(_REGISTRY)


def is_local_task(name: str) -> bool:
    return name in _REGISTRY


def local_task_descriptions() -> Dict[str, str]:
    return {name: task.description for name, task in _REGISTRY.items()}


def tasks_root() -> Path:
    """Where generated task folders live (under the package cache, relocatable with
    ``$NEMO_MINITRON_CACHE``)."""
    from nemo_minitron.data import cache_dir

    return cache_dir() / TASKS_SUBDIR


def _records_jsonl(records: Records) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def materialize_task(name: str, root: Optional[Path] = None) -> Path:
    """Write task ``name``'s data and YAML into ``root/<name>/``; return that folder.

    The folder holds exactly one YAML (so ``include_path`` on it registers just this task) and
    the data file it points to; data files of older contents are removed.
    """
    if name not in _REGISTRY:
        raise KeyError(f"{name!r} is not a local task; registered: {local_task_names()}")
    config, records = _REGISTRY[name].build()
    if not records:
        raise ValueError(f"local task {name!r} has no records")
    folder = Path(root or tasks_root()) / name
    folder.mkdir(parents=True, exist_ok=True)
    body = _records_jsonl(records)
    data_file = folder / f"{name}-{hashlib.sha256(body.encode('utf-8')).hexdigest()[:12]}.jsonl"
    write_if_changed(data_file, body)
    full = {
        "task": name,
        "dataset_path": "json",
        # datasets' own cache of the parsed file stays next to it (not in ~/.cache/huggingface).
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())},
                           "cache_dir": str((folder / DATASETS_CACHE).resolve())},
        "test_split": "test",
        **config,
    }
    full.setdefault("metadata", {"version": 1.0})
    write_if_changed(folder / f"{name}.yaml", yaml.safe_dump(full, sort_keys=False, allow_unicode=True))
    for stale in folder.glob(f"{name}-*.jsonl"):
        if stale != data_file:
            stale.unlink(missing_ok=True)
    for other in folder.iterdir():  # anything else (old YAML names, leftovers) would confuse lm-eval
        if other not in (data_file, folder / f"{name}.yaml") and not other.name.startswith("."):
            shutil.rmtree(other) if other.is_dir() else other.unlink(missing_ok=True)
    return folder


def materialize_tasks(names: Sequence[str], root: Optional[Path] = None) -> List[Path]:
    """:func:`materialize_task` for each name; the folders to pass as ``include_path``."""
    return [materialize_task(name, root) for name in names]


# --------------------------------------------------------------------------- text helpers
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> List[str]:
    """Split prose into sentences (punctuation followed by an upper-case start). Crude, but
    deterministic and good enough to build cloze items from news and encyclopedia text."""
    sentences: List[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            sentences.append(paragraph[start:match.start()].strip() + paragraph[match.start():match.end()].strip())
            start = match.end()
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
    return [s for s in sentences if s]


def _usable(sentence: str, min_chars: int, max_chars: int) -> bool:
    return min_chars <= len(sentence) <= max_chars and sentence[-1] in ".!?\"')"


# --------------------------------------------------------------------------- built-in tasks
def corpus_ppl_records(documents: Sequence[str]) -> Records:
    """One record per held-out document (whole documents, as wikitext does)."""
    return [{"text": doc} for doc in documents if doc.strip()]


def cloze_records(documents: Sequence[str], num_items: int = 200, context_sentences: int = 3,
                  num_distractors: int = 3, seed: int = 1234, min_chars: int = 30,
                  max_chars: int = 300) -> Records:
    """Multiple-choice next-sentence items from ``documents`` (deterministic per ``seed``).

    Each item: the ``context_sentences`` sentences before position ``i`` of a document, the true
    sentence ``i`` and ``num_distractors`` sentences drawn from *other* documents whose lengths
    are within a factor 2 of the true one (so length alone does not give the answer away).
    """
    rng = random.Random(f"cloze-{seed}")
    docs = [split_sentences(doc) for doc in documents]
    pool: List[Tuple[int, str]] = [(d, s) for d, sents in enumerate(docs) for s in sents
                                   if _usable(s, min_chars, max_chars)]
    candidates: List[Tuple[int, int]] = [
        (d, i) for d, sents in enumerate(docs) for i in range(1, len(sents)) if _usable(sents[i], min_chars, max_chars)
    ]
    # Spread items over documents: shuffle within each document, then interleave round-robin.
    by_doc: Dict[int, List[int]] = {}
    for d, i in candidates:
        by_doc.setdefault(d, []).append(i)
    for positions in by_doc.values():
        rng.shuffle(positions)
    order: List[Tuple[int, int]] = []
    depth = 0
    while len(order) < len(candidates):
        for d in sorted(by_doc):
            if depth < len(by_doc[d]):
                order.append((d, by_doc[d][depth]))
        depth += 1
    items: Records = []
    for d, i in order:
        if len(items) >= num_items:
            break
        answer = docs[d][i]
        similar = [s for e, s in pool if e != d and 0.5 <= len(s) / len(answer) <= 2.0 and s != answer]
        if len(similar) < num_distractors:
            continue
        choices = rng.sample(similar, num_distractors) + [answer]
        rng.shuffle(choices)
        context = " ".join(docs[d][max(0, i - context_sentences):i])
        items.append({"context": context, "choices": choices, "label": choices.index(answer)})
    return items


def _default_validation_documents() -> List[str]:
    from nemo_minitron.data import load_default_corpus

    return list(load_default_corpus().validation)


def _build_corpus_ppl() -> Tuple[Dict[str, Any], Records]:
    config = {
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "text",
        "metric_list": [
            {"metric": "word_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
            {"metric": "byte_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
            {"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False},
        ],
    }
    return config, corpus_ppl_records(_default_validation_documents())


def _build_cloze_mc() -> Tuple[Dict[str, Any], Records]:
    config = {
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }
    return config, cloze_records(_default_validation_documents())


register_local_task(CORPUS_PPL, _build_corpus_ppl,
                    "perplexity (rolling log-likelihood) of held-out documents of the offline corpus")
register_local_task(CLOZE_MC, _build_cloze_mc,
                    "pick the true next sentence of a held-out passage among 4 (chance 0.25)")


# --------------------------------------------------------------------------- generation tasks
RecordSource = Union[Sequence[Mapping[str, str]], Callable[[], Sequence[Mapping[str, str]]]]


def register_generation_task(name: str, records: RecordSource, max_gen_toks: int = 64,
                             until: Sequence[str] = ("\n",), ignore_case: bool = True,
                             description: str = "", overwrite: bool = False) -> None:
    """Register a greedy ``generate_until`` task scored by exact match of ``answer``.

    ``records`` are ``{"prompt": ..., "answer": ...}`` mappings (or a function returning them,
    called when the task is materialized, so expensive data is built only when evaluated). The
    prediction is compared to ``answer`` after stripping surrounding whitespace (and case, with
    ``ignore_case``); generation stops at any string of ``until`` or after ``max_gen_toks``.
    """

    def build() -> Tuple[Dict[str, Any], Records]:
        raw = records() if callable(records) else records
        rows: Records = []
        for k, record in enumerate(raw):
            if "prompt" not in record or "answer" not in record:
                raise ValueError(f"task {name!r}: record {k} needs 'prompt' and 'answer' keys, got {sorted(record)}")
            rows.append({"prompt": str(record["prompt"]), "answer": str(record["answer"])})
        config = {
            "output_type": "generate_until",
            "doc_to_text": "prompt",
            "doc_to_target": "answer",
            "generation_kwargs": {"until": list(until), "max_gen_toks": int(max_gen_toks), "do_sample": False},
            "metric_list": [{
                "metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                "ignore_case": bool(ignore_case), "regexes_to_ignore": [r"^\s+", r"\s+$"],
            }],
        }
        return config, rows

    register_local_task(name, build, description or "exact match of a greedy answer", overwrite=overwrite)
