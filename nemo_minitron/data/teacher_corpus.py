"""The teacher corpus: every source of ``data.sources``, split, deduplicated, decontaminated, recorded.

Steps, in this order (the manifest records what each did, per source):

1. **Split** each document by a hash of its text as read (:func:`~nemo_minitron.data.corpus.in_validation`,
   the default corpus's rule): the gensim documents held out of the default corpus are held out here
   too, so the old teacher and a new one can be compared on the very same text.
2. **Units**: a document is cut into paragraphs; a paragraph of more than ``UNIT_WORDS`` words
   into runs of whole sentences, so one matching sentence does not cost a whole speech.
3. **Benchmark overlap**: a unit sharing a 13-word sequence with text the eval stage scores is
   dropped (:mod:`~nemo_minitron.data.decontam`), from both splits.
4. **Duplicates**: a unit of ``DEDUP_MIN_WORDS`` or more words whose words (lower-cased) equal an
   earlier unit's is dropped. Held-out documents go first, so a paragraph that is in both
   splits stays held out and leaves the training side (no train/held-out leak); among equals
   the earlier source keeps it (e.g. SQuAD and DROP passages of the same Wikipedia article).
5. Documents left with fewer than ``MIN_DOC_CHARS`` characters are dropped.

Sources that are not available here (:class:`~nemo_minitron.data.sources.SourceUnavailable`)
are listed as such in the manifest and skipped, with a warning; a corpus built without them is
cached under a different key.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nemo_minitron.atomic import atomic_directory
from nemo_minitron.data.cache import cache_dir
from nemo_minitron.data.corpus import CorpusSplits, in_validation
from nemo_minitron.data.decontam import NGRAM, benchmark_index, words
from nemo_minitron.data.sources import TEXT_SOURCES, SourceUnavailable, TextSource

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.05  # the default corpus's: its held-out documents stay held out
UNIT_WORDS = 120
DEDUP_MIN_WORDS = 10
MIN_DOC_CHARS = 200
_FORMAT_VERSION = 1
CORPUS_SUBDIR = "corpus"
MANIFEST_FILE = "manifest.json"
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


@dataclass(frozen=True)
class TeacherCorpus:
    """The split documents (each tagged with its source) and the manifest describing them."""

    train: list[tuple[str, str]]  # (source, text)
    validation: list[tuple[str, str]]
    manifest: dict[str, Any]

    def splits(self, sources: Sequence[str] | None = None) -> CorpusSplits:
        """The texts, optionally of some sources only."""
        keep = (lambda s: True) if sources is None else (lambda s: s in sources)
        return CorpusSplits(train=[t for s, t in self.train if keep(s)],
                            validation=[t for s, t in self.validation if keep(s)])


def text_units(document: str) -> list[list[str]]:
    """Paragraphs of a document, each a list of units (itself, or runs of its sentences)."""
    out: list[list[str]] = []
    for paragraph in re.split(r"\n\s*\n", document):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph.split()) <= UNIT_WORDS:
            out.append([paragraph])
            continue
        units, current, size = [], [], 0
        for sentence in _SENTENCE_END.split(paragraph):
            n = len(sentence.split())
            if current and size + n > UNIT_WORDS:
                units.append(" ".join(current))
                current, size = [], 0
            current.append(sentence)
            size += n
        if current:
            units.append(" ".join(current))
        out.append(units)
    return out


def _read_sources(sources: Sequence[TextSource]) -> tuple[dict[str, list[str]], dict[str, str]]:
    docs, unavailable = {}, {}
    for source in tqdm(sources, desc="reading sources", unit="source"):
        try:
            docs[source.name] = source.load()
        except SourceUnavailable as err:
            unavailable[source.name] = str(err)
            log.warning("corpus source %s skipped: %s", source.name, err)
    return docs, unavailable


def _clean(sources: Sequence[TextSource], docs: dict[str, list[str]], validation_fraction: float,
           index: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict[str, dict[str, int]]]:
    stats = {s.name: dict.fromkeys(("docs_read", "units_read", "units_benchmark_overlap", "units_duplicate",
                                    "docs_dropped_short", "train_docs", "validation_docs", "train_bytes",
                                    "validation_bytes", "bytes_read"), 0) for s in sources if s.name in docs}
    # Held-out documents first (they keep a duplicated paragraph), each side in source order.
    ordered: list[tuple[bool, str, str]] = []
    for held_out in (True, False):
        for source in sources:
            for doc in docs.get(source.name, []):
                if in_validation(doc, validation_fraction) == held_out:
                    ordered.append((held_out, source.name, doc))
    seen: set[str] = set()
    train, validation = [], []
    for held_out, name, doc in tqdm(ordered, desc="dedup + decontamination", unit="doc"):
        st = stats[name]
        st["docs_read"] += 1
        st["bytes_read"] += len(doc.encode("utf-8"))
        paragraphs = []
        for units in text_units(doc):
            kept = []
            for unit in units:
                st["units_read"] += 1
                if index.overlaps(unit):
                    st["units_benchmark_overlap"] += 1
                    continue
                unit_words = words(unit)
                if len(unit_words) >= DEDUP_MIN_WORDS:
                    key = " ".join(unit_words)
                    if key in seen:
                        st["units_duplicate"] += 1
                        continue
                    seen.add(key)
                kept.append(unit)
            if kept:
                paragraphs.append(" ".join(kept))
        text = "\n\n".join(paragraphs)
        if len(text) < MIN_DOC_CHARS:
            st["docs_dropped_short"] += 1
            continue
        side = "validation" if held_out else "train"
        st[f"{side}_docs"] += 1
        st[f"{side}_bytes"] += len(text.encode("utf-8"))
        (validation if held_out else train).append((name, text))
    return train, validation, stats


def _write(folder: Path, corpus: TeacherCorpus) -> None:
    with atomic_directory(folder) as tmp:
        for split in ("train", "validation"):
            with gzip.open(tmp / f"{split}.jsonl.gz", "wt", encoding="utf-8") as out:
                for source, text in getattr(corpus, split):
                    out.write(json.dumps({"source": source, "text": text}, ensure_ascii=False) + "\n")
        (tmp / MANIFEST_FILE).write_text(json.dumps(corpus.manifest, indent=1) + "\n")


def _read(folder: Path) -> TeacherCorpus:
    splits = {}
    for split in ("train", "validation"):
        with gzip.open(folder / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
            splits[split] = [(r["source"], r["text"]) for r in map(json.loads, handle)]
    return TeacherCorpus(splits["train"], splits["validation"], json.loads((folder / MANIFEST_FILE).read_text()))


def load_teacher_corpus(sources: Sequence[TextSource] = TEXT_SOURCES,
                        validation_fraction: float = VALIDATION_FRACTION) -> TeacherCorpus:
    """The teacher corpus (built once, then read from ``cache_dir()/corpus/``; kept per process).

    The cache key hashes every document read, the settings and the benchmark data, so any change
    of a source, of the cleaning or of the benchmarks builds a new corpus.
    """
    return _load(tuple(sources), validation_fraction, str(cache_dir()))


@functools.lru_cache(maxsize=2)
def _load(sources: tuple[TextSource, ...], validation_fraction: float, _cache: str) -> TeacherCorpus:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    docs, unavailable = _read_sources(sources)
    index_folder = cache_dir() / CORPUS_SUBDIR
    index, benchmark_counts = benchmark_index(index_folder)
    key = hashlib.sha256(f"v{_FORMAT_VERSION}|{validation_fraction}|{UNIT_WORDS}|{DEDUP_MIN_WORDS}|"
                         f"{MIN_DOC_CHARS}|{NGRAM}|{len(index)}|{index.hashes[:64].tobytes().hex()}".encode())
    for name in sorted(docs):
        key.update(name.encode())
        for doc in docs[name]:
            key.update(hashlib.sha256(doc.encode("utf-8")).digest())
    folder = index_folder / f"teacher-{key.hexdigest()[:16]}"
    if (folder / MANIFEST_FILE).is_file():
        return _read(folder)
    train, validation, stats = _clean(sources, docs, validation_fraction, index)
    manifest = {
        "fingerprint": key.hexdigest()[:16],
        "split": {"rule": "sha256(document as read)[:8] / 2**64 < validation_fraction (per document)",
                  "validation_fraction": validation_fraction},
        "dedup": {"unit": f"paragraph, or runs of whole sentences of at most {UNIT_WORDS} words",
                  "rule": f"drop a unit of >= {DEDUP_MIN_WORDS} words whose lower-cased words equal an earlier "
                          "unit's; held-out documents first, then sources in order",
                  "min_doc_chars": MIN_DOC_CHARS},
        "decontamination": {"ngram_words": NGRAM, "benchmark_ngrams": len(index),
                            "benchmark_strings": benchmark_counts,
                            "rule": "drop a unit sharing any 13-word sequence with a scored benchmark record"},
        "sources": [{"name": s.name, "description": s.description, "origin": s.origin, "license": s.license,
                     **({"unavailable": unavailable[s.name]} if s.name in unavailable else stats[s.name])}
                    for s in sources],
        "totals": {k: sum(st[k] for st in stats.values())
                   for k in ("train_docs", "validation_docs", "train_bytes", "validation_bytes")},
    }
    corpus = TeacherCorpus(train, validation, manifest)
    _write(folder, corpus)
    return corpus


def manifest_table(manifest: dict[str, Any]) -> str:
    """The manifest's sources as a Markdown table (for docs and the checkpoint's README)."""
    rows = ["| source | origin | license | train docs | train MB | held-out docs | held-out MB | "
            "units dropped: benchmark / duplicate |", "|---|---|---|---|---|---|---|---|"]
    for s in manifest["sources"]:
        if "unavailable" in s:
            rows.append(f"| {s['name']} | {s['origin']} | {s['license']} | unavailable here | | | | |")
            continue
        rows.append(f"| {s['name']} | {s['origin']} | {s['license']} | {s['train_docs']:,} | "
                    f"{s['train_bytes'] / 1e6:.2f} | {s['validation_docs']:,} | {s['validation_bytes'] / 1e6:.2f} | "
                    f"{s['units_benchmark_overlap']:,} / {s['units_duplicate']:,} |")
    t = manifest["totals"]
    rows.append(f"| **total** | | | {t['train_docs']:,} | {t['train_bytes'] / 1e6:.2f} | {t['validation_docs']:,} | "
                f"{t['validation_bytes'] / 1e6:.2f} | |")
    return "\n".join(rows)
