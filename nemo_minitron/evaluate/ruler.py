"""Offline RULER: synthetic long-context tasks sized with the model's tokenizer, and scoring.

RULER (Hsieh et al., 2024) measures how well a model uses a long context with synthetic tasks
whose answers are checkable. lm-eval's bundled RULER downloads essays and misbehaves at short
lengths, so this module regenerates the tasks that need no downloaded data, following RULER's
templates (``synthetic.yaml``):

* ``niah_single``      one needle ("One of the special magic numbers for KEY is: 7-digit number.")
  hidden in the *noise* haystack (repeated "The grass is green. The sky is blue. ...").
* ``niah_multikey``    4 needles with different keys; the question asks for one key.
* ``niah_multivalue``  4 values for the same key; all 4 must be returned.
* ``niah_multiquery``  4 keys asked at once; all 4 values must be returned.
* ``vt``               variable tracking: a chain ``VAR A = 12345``, ``VAR B = VAR A``, ... (4 hops)
  hidden in noise; return every variable holding the value.
* ``cwe``              common words extraction: a numbered list where 10 words appear often and
  the rest rarely; return the 10 common ones.
* ``fwe``              frequent words extraction: Zipf-distributed coded words; return the 3 most
  frequent (ignoring the top-ranked "..." noise).

Each sample is *sized*: the haystack (noise sentences, noise blocks, listed words, coded words)
is the largest whose tokenized prompt (with BOS, including RULER's answer prefix) plus the
generation budget fits the requested length; the generation budget is ``max_new_tokens`` and at
least the tokenized reference answer. Everything is deterministic per ``seed`` (string-seeded
``random.Random``, independent of ``PYTHONHASHSEED``).

Scoring is RULER's, on a 0-1 scale: ``string_match_all`` averages the fraction of references
found (case-insensitive substring) in each prediction; ``string_match_part`` counts a
prediction as right if any reference is found. All tasks here use ``string_match_all``, as RULER
does for them (``part`` is RULER's QA metric).
"""

from __future__ import annotations

import functools
import logging
import math
import random
import string
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..models.generation import generation_kwargs

log = logging.getLogger(__name__)

NOISE_SENTENCES: Tuple[str, ...] = (
    "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
)
NOISE = " ".join(NOISE_SENTENCES)

NIAH_TEMPLATE = (
    "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_v} afterwards.\n{context}\n"
    "What are all the special magic {type_v} for {query} mentioned in the provided text?"
)
NIAH_ANSWER_PREFIX = " The special magic {type_v} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {type_v} for {key} is: {value}."

VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
VT_ANSWER_PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assigned the value {query}, they are: "
)

CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the {num_cw} most common words in the above list?"
)
CWE_ANSWER_PREFIX = " Answer: The top {num_cw} words that appear most often in the list are:"

FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently appeared coded words. {context}\n"
    "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
    "frequently appeared words in the above coded text?"
)
FWE_ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"

METRICS = ("all", "part")

#: Builds the prompt and references for a haystack of ``n`` units; ``None`` when ``n`` units
#: are impossible (e.g. more distinct words than the word list has).
Builder = Callable[[int], Optional[Tuple[str, List[str]]]]


@dataclass(frozen=True)
class Candidate:
    """One way to build a sample; sizing uses the first candidate that fits with
    at least ``min_units`` haystack units."""

    build: Builder
    min_units: int = 1
    guess_tokens_per_unit: float = 4.0


@dataclass(frozen=True)
class RulerTask:
    """A RULER task: how to draw a sample, its generation budget and its metric."""

    name: str
    make: Callable[[random.Random], List[Candidate]]
    max_new_tokens: int
    metric: str = "all"
    description: str = ""


@dataclass
class RulerSample:
    """One sized prompt. ``prompt`` already ends with the answer prefix."""

    task: str
    length: int
    index: int
    prompt: str
    references: List[str]
    metric: str
    max_new_tokens: int
    prompt_tokens: int
    answer_tokens: int
    haystack_units: int
    prediction: Optional[str] = field(default=None)
    score: Optional[float] = field(default=None)

    def to_dict(self, with_prompt: bool = False) -> Dict[str, Any]:
        row = asdict(self)
        if not with_prompt:
            row.pop("prompt")
        return row


# --------------------------------------------------------------------------- scoring
def _found(reference: str, prediction: str) -> float:
    return 1.0 if reference.lower() in prediction.lower() else 0.0


def score_all(prediction: str, references: Sequence[str]) -> float:
    """Fraction of ``references`` found in ``prediction`` (RULER's per-sample ``string_match_all``)."""
    if not references:
        raise ValueError("a sample needs at least one reference")
    return sum(_found(r, prediction) for r in references) / len(references)


def score_part(prediction: str, references: Sequence[str]) -> float:
    """1 if any reference is found in ``prediction`` (RULER's per-sample ``string_match_part``)."""
    if not references:
        raise ValueError("a sample needs at least one reference")
    return max(_found(r, prediction) for r in references)


def string_match_all(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER ``string_match_all`` (0-1): mean over samples of the fraction of references found."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need as many predictions as reference lists, and at least one")
    return sum(score_all(p, r) for p, r in zip(predictions, references)) / len(predictions)


def string_match_part(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER ``string_match_part`` (0-1): fraction of samples where any reference is found."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need as many predictions as reference lists, and at least one")
    return sum(score_part(p, r) for p, r in zip(predictions, references)) / len(predictions)


def score_sample(prediction: str, references: Sequence[str], metric: str = "all") -> float:
    if metric == "all":
        return score_all(prediction, references)
    if metric == "part":
        return score_part(prediction, references)
    raise ValueError(f"metric={metric!r} must be one of {METRICS}")


def postprocess(prediction: str) -> str:
    """RULER's prediction clean-up: drop non-printable characters, strip."""
    return "".join(ch for ch in prediction if ch.isprintable() or ch in "\n\t").strip()


# --------------------------------------------------------------------------- task generators
def _words() -> Tuple[str, ...]:
    from nemo_minitron.evaluate.words import corpus_words

    return corpus_words()


def _distinct_numbers(rng: random.Random, k: int, lo: int = 1_000_000, hi: int = 9_999_999) -> List[str]:
    return [str(v) for v in rng.sample(range(lo, hi + 1), k)]


def _keys(rng: random.Random, k: int) -> List[str]:
    """``k`` distinct RULER-style word keys ("adjective-noun" there, two corpus words here)."""
    words, keys = _words(), []
    while len(keys) < k:
        key = "-".join(rng.sample(words, 2))
        if key not in keys:
            keys.append(key)
    return keys


def _insert_at_depths(units: List[str], items: Sequence[str], depths: Sequence[float]) -> List[str]:
    """Insert ``items`` (in order) at fractional positions ``depths`` of ``units``."""
    out = list(units)
    positions = [int(d * len(units)) for d in depths]
    for offset, (pos, item) in enumerate(sorted(zip(positions, items), key=lambda pi: pi[0])):
        out.insert(pos + offset, item)
    return out


def _query_text(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + ", and " + keys[-1]


def make_niah(num_keys: int = 1, num_values: int = 1, num_queries: int = 1) -> Callable[[random.Random], List[Candidate]]:
    """Needle-in-a-haystack in the noise haystack; ``num_keys`` needles' keys (the first
    ``num_queries`` are asked), ``num_values`` values per key."""
    if not 1 <= num_queries <= num_keys:
        raise ValueError("need 1 <= num_queries <= num_keys")

    def make(rng: random.Random) -> List[Candidate]:
        type_v = "numbers"
        keys = _keys(rng, num_keys)
        values = _distinct_numbers(rng, num_keys * num_values)
        needles = [NEEDLE.format(type_v=type_v, key=keys[i // num_values], value=v) for i, v in enumerate(values)]
        rng.shuffle(needles)
        depths = [rng.random() for _ in needles]
        queried = keys[:num_queries]
        refs = [v for i, v in enumerate(values) if keys[i // num_values] in queried]
        query = _query_text(queried)

        def build(n: int) -> Tuple[str, List[str]]:
            noise = [NOISE_SENTENCES[i % len(NOISE_SENTENCES)] for i in range(n)]
            context = " ".join(_insert_at_depths(noise, needles, depths))
            prompt = NIAH_TEMPLATE.format(type_v=type_v, context=context, query=query)
            return prompt + NIAH_ANSWER_PREFIX.format(type_v=type_v, query=query), refs

        return [Candidate(build, min_units=len(NOISE_SENTENCES), guess_tokens_per_unit=5.0)]

    return make


def make_vt(num_chains: int = 1, num_hops: int = 4) -> Callable[[random.Random], List[Candidate]]:
    """Variable tracking: chains of ``num_hops`` assignments in noise blocks; the first chain is asked."""

    def make(rng: random.Random) -> List[Candidate]:
        names: List[str] = []
        while len(names) < num_chains * (num_hops + 1):
            name = "".join(rng.choices(string.ascii_uppercase, k=5))
            if name not in names:
                names.append(name)
        values = _distinct_numbers(rng, num_chains, 10_000, 99_999)
        chains, lines, depths = [], [], []
        for c in range(num_chains):
            chain = names[c * (num_hops + 1):(c + 1) * (num_hops + 1)]
            chains.append(chain)
            chain_lines = [f"VAR {chain[0]} = {values[c]}"] + [
                f"VAR {chain[j + 1]} = VAR {chain[j]}" for j in range(num_hops)]
            chain_depths = sorted(rng.random() for _ in chain_lines)
            lines += chain_lines
            depths += chain_depths
        refs = list(chains[0])

        def build(n: int) -> Tuple[str, List[str]]:
            # A chain's lines keep their order: stable sort of (depth) keeps each chain ascending.
            context = "\n".join(_insert_at_depths([NOISE] * n, lines, depths))
            prompt = VT_TEMPLATE.format(context=context, query=values[0])
            return prompt + VT_ANSWER_PREFIX.format(num_v=len(refs), query=values[0]), refs

        return [Candidate(build, min_units=1, guess_tokens_per_unit=25.0)]

    return make


#: (repeats of a common word, repeats of an uncommon word); RULER uses 30/3 and lowers the
#: frequencies for short contexts; the first configuration that fits ``num_cw`` uncommon words wins.
CWE_FREQUENCIES: Tuple[Tuple[int, int], ...] = ((30, 3), (20, 3), (10, 2), (6, 2), (4, 1), (2, 1))


def make_cwe(num_cw: int = 10) -> Callable[[random.Random], List[Candidate]]:
    """Common words extraction over a numbered, shuffled word list."""

    def make(rng: random.Random) -> List[Candidate]:
        words = list(_words())
        rng.shuffle(words)
        common, uncommon_pool = words[:num_cw], words[num_cw:]
        order_seed = rng.random()
        candidates = []
        for freq_cw, freq_ucw in CWE_FREQUENCIES:
            def build(n: int, freq_cw: int = freq_cw, freq_ucw: int = freq_ucw) -> Optional[Tuple[str, List[str]]]:
                if n > len(uncommon_pool):
                    return None
                listed = common * freq_cw + uncommon_pool[:n] * freq_ucw
                random.Random(f"{order_seed}-{freq_cw}-{n}").shuffle(listed)
                context = " ".join(f"{i + 1}. {w}" for i, w in enumerate(listed))
                prompt = CWE_TEMPLATE.format(context=context, num_cw=num_cw)
                return prompt + CWE_ANSWER_PREFIX.format(num_cw=num_cw), list(common)

            candidates.append(Candidate(build, min_units=num_cw, guess_tokens_per_unit=6.0 * freq_ucw))
        return candidates

    return make


@functools.lru_cache(maxsize=8)
def _zeta(alpha: float) -> float:
    return sum(k ** -alpha for k in range(1, 100_000))  # to ~1e-5 for alpha=2


def _zipf_counts(n: int, vocab_size: int, alpha: float) -> List[int]:
    """RULER's counts: ``int(n * k**-alpha / zeta(alpha))`` for rank ``k``."""
    zeta = _zeta(alpha)
    return [int(n * k ** -alpha / zeta) for k in range(1, vocab_size + 1)]


def make_fwe(vocab_size: int = 2000, word_len: int = 6, alpha: float = 2.0) -> Callable[[random.Random], List[Candidate]]:
    """Frequent words extraction: ``n`` coded words drawn with Zipf(alpha) counts; rank 1 is "..."."""

    def make(rng: random.Random) -> List[Candidate]:
        vocab: List[str] = []
        seen = set()
        while len(vocab) < vocab_size:
            word = "".join(rng.choices(string.ascii_lowercase, k=word_len))
            if word not in seen:
                seen.add(word)
                vocab.append(word)
        vocab[0] = "..."  # RULER: the top-ranked word is noise the question says to ignore
        refs = vocab[1:4]
        order_seed = rng.random()
        # Smallest size where the 3 answers are strictly more frequent than everything below them.
        min_units = next(n for n in range(16, 10_000) if (lambda c: c[3] > c[4] > 0 and c[2] > c[3])(_zipf_counts(n, 5, alpha)))

        def build(n: int) -> Tuple[str, List[str]]:
            counts = _zipf_counts(n, vocab_size, alpha)
            sampled = [w for w, c in zip(vocab, counts) for _ in range(c)]
            random.Random(f"{order_seed}-{n}").shuffle(sampled)
            return FWE_TEMPLATE.format(context=" ".join(sampled)) + FWE_ANSWER_PREFIX, list(refs)

        return [Candidate(build, min_units=min_units, guess_tokens_per_unit=3.0)]

    return make


TASKS: Dict[str, RulerTask] = {
    t.name: t for t in (
        RulerTask("niah_single", make_niah(1, 1, 1), 32, description="one needle in noise"),
        RulerTask("niah_multikey", make_niah(4, 1, 1), 32, description="one of 4 needles with different keys"),
        RulerTask("niah_multivalue", make_niah(1, 4, 1), 64, description="all 4 values of one key"),
        RulerTask("niah_multiquery", make_niah(4, 1, 4), 64, description="the values of 4 keys at once"),
        RulerTask("vt", make_vt(1, 4), 48, description="variable tracking, 1 chain of 4 hops"),
        RulerTask("cwe", make_cwe(10), 96, description="10 most common words of a list"),
        RulerTask("fwe", make_fwe(), 48, description="3 most frequent coded words"),
    )
}
DEFAULT_TASKS: Tuple[str, ...] = tuple(TASKS)


# --------------------------------------------------------------------------- sizing
def _num_tokens(tokenizer: Any, text: str, special: bool = True) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def largest_fitting(fits: Callable[[int], bool], guess: int) -> Optional[int]:
    """Largest ``n >= 0`` with ``fits(n)`` found by bracketing around ``guess`` then bisecting;
    ``None`` when even ``fits(0)`` is false. The result is always a checked fit."""
    if not fits(0):
        return None
    lo, hi = 0, None
    guess = max(1, guess)
    if fits(guess):
        lo, step = guess, max(1, guess // 16)
        while fits(lo + step):
            lo, step = lo + step, step * 2
        hi = lo + step
    else:
        near = int(guess * 0.9)
        if near > 0 and fits(near):
            lo = near
        hi = guess
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def size_sample(task: RulerTask, tokenizer: Any, length: int, index: int, seed: int = 0,
                max_new_tokens: Optional[int] = None) -> RulerSample:
    """Draw sample ``index`` of ``task`` and grow its haystack to fill ``length`` tokens."""
    rng = random.Random(f"ruler-{seed}-{task.name}-{length}-{index}")
    budget = task.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
    for candidate in task.make(rng):
        cache: Dict[int, Optional[Tuple[str, List[str], int, int]]] = {}

        def measure(n: int) -> Optional[Tuple[str, List[str], int, int]]:
            if n not in cache:
                built = candidate.build(n)
                if built is None:
                    cache[n] = None
                else:
                    prompt, refs = built
                    answer = _num_tokens(tokenizer, " " + ", ".join(refs), special=False)
                    cache[n] = (prompt, refs, _num_tokens(tokenizer, prompt), answer)
            return cache[n]

        def fits(n: int) -> bool:
            m = measure(n)
            return m is not None and m[2] + max(budget, m[3]) <= length

        base = measure(0)
        spare = length - (base[2] + max(budget, base[3])) if base else 0
        n = largest_fitting(fits, int(spare / candidate.guess_tokens_per_unit))
        if n is None or n < candidate.min_units:
            continue
        prompt, refs, prompt_tokens, answer_tokens = measure(n)  # type: ignore[misc]
        return RulerSample(task=task.name, length=length, index=index, prompt=prompt, references=refs,
                           metric=task.metric, max_new_tokens=max(budget, answer_tokens),
                           prompt_tokens=prompt_tokens, answer_tokens=answer_tokens, haystack_units=n)
    raise ValueError(f"RULER task {task.name!r} does not fit in {length} tokens with max_new_tokens={budget}; "
                     "use a longer length (>= 512 fits every task) or fewer new tokens")


def check_tasks(tasks: Optional[Sequence[str]]) -> List[str]:
    """The task names to run (all when ``tasks`` is empty); raises on unknown names."""
    names = list(tasks) if tasks else list(DEFAULT_TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown RULER tasks {unknown}; choose from {list(TASKS)}")
    return names


def generate_ruler_samples(tokenizer: Any, lengths: Sequence[int], tasks: Optional[Sequence[str]] = None,
                           samples_per_task: int = 10, seed: int = 0,
                           max_new_tokens: Optional[int] = None) -> List[RulerSample]:
    """Every sample of every task at every length (task-major order), deterministic per ``seed``."""
    if samples_per_task <= 0:
        raise ValueError(f"samples_per_task={samples_per_task} must be positive")
    return [size_sample(task, tokenizer, int(length), i, seed, max_new_tokens)
            for task in (TASKS[n] for n in check_tasks(tasks)) for length in lengths for i in range(samples_per_task)]


# --------------------------------------------------------------------------- running
@torch.inference_mode()
def predict(model: torch.nn.Module, tokenizer: Any, sample: RulerSample) -> str:
    """Greedy continuation of ``sample.prompt`` (batch 1: no padding, exact for SSM layers)."""
    device = next(model.parameters()).device
    enc = tokenizer(sample.prompt, return_tensors="pt")
    input_ids = enc["input_ids"].to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with generation_kwargs(model) as extra:
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=sample.max_new_tokens, do_sample=False, pad_token_id=pad, **extra)
    return postprocess(tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True))


def run_ruler(model: torch.nn.Module, tokenizer: Any, lengths: Sequence[int] = (1024, 2048),
              tasks: Optional[Sequence[str]] = None, samples_per_task: int = 10,
              max_new_tokens: Optional[int] = None, seed: int = 0,
              samples_out: Optional[List[RulerSample]] = None) -> Dict[str, Dict[int, float]]:
    """Generate the samples, answer them greedily with ``model.generate`` and score them.

    Returns ``{task: {length: score}}`` (0-1). ``max_new_tokens`` overrides every task's
    generation budget (RULER-like defaults in :data:`TASKS`). Pass a list as ``samples_out`` to
    get every sample back with its prediction and score.
    """
    was_training = model.training
    model.eval()
    scores: Dict[str, Dict[int, List[float]]] = {}
    try:
        for sample in generate_ruler_samples(tokenizer, lengths, tasks, samples_per_task, seed, max_new_tokens):
            start = time.perf_counter()
            sample.prediction = predict(model, tokenizer, sample)
            sample.score = score_sample(sample.prediction, sample.references, sample.metric)
            scores.setdefault(sample.task, {}).setdefault(sample.length, []).append(sample.score)
            log.debug("ruler %s@%d #%d: %.2f in %.1fs", sample.task, sample.length, sample.index, sample.score,
                      time.perf_counter() - start)
            if samples_out is not None:
                samples_out.append(sample)
    finally:
        model.train(was_training)
    result = {task: {length: sum(v) / len(v) for length, v in by_len.items()} for task, by_len in scores.items()}
    for task, by_len in result.items():
        log.info("ruler %s: %s", task, ", ".join(f"{k}={v:.3f}" for k, v in by_len.items()))
    return result


def ruler_average(scores: Dict[str, Dict[int, float]]) -> Dict[int, float]:
    """Mean over tasks per length (RULER's headline number per context length)."""
    lengths = sorted({length for by_len in scores.values() for length in by_len})
    out = {}
    for length in lengths:
        vals = [by_len[length] for by_len in scores.values() if length in by_len and not math.isnan(by_len[length])]
        out[length] = sum(vals) / len(vals) if vals else math.nan
    return out
