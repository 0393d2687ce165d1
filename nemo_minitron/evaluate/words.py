"""English word list for the RULER tasks, taken from the offline corpus vocabulary.

RULER draws needle keys and common-words-extraction words from an English word list (the
``wonderwords`` package). We have no download, so the list is built from the offline corpus:
lower-case alphabetic words of 4-10 letters seen at least 3 times (~8k words; typos and rare
markup debris drop out). Sorted, so it is identical on every machine with the same corpus.
"""

from __future__ import annotations

import collections
import functools
import re
from typing import Tuple

_WORD = re.compile(r"\b[a-z]{4,10}\b")
MIN_COUNT = 3


@functools.lru_cache(maxsize=1)
def corpus_words() -> Tuple[str, ...]:
    """Distinct frequent lower-case words of the default corpus (train + validation), sorted."""
    from nemo_minitron.data import load_default_corpus

    corpus = load_default_corpus()
    counts = collections.Counter(w for doc in (*corpus.train, *corpus.validation) for w in _WORD.findall(doc))
    words = tuple(sorted(w for w, n in counts.items() if n >= MIN_COUNT))
    if len(words) < 100:
        raise RuntimeError(f"the offline corpus gave only {len(words)} distinct words; is gensim's test data intact?")
    return words
