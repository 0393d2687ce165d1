"""Cached generation for models whose family cannot size its cache (a NemotronH that has lost
every attention layer).

transformers 5.23 asks a hybrid cache's first *attention* layer for the sequence length and the
mask sizes, and raises when there is none ("`get_seq_length` can only be called on Attention
layers") -- which is exactly what depth pruning can produce. :func:`generation_kwargs` gives
``generate`` a cache that counts the tokens the model has consumed instead (tested to match
uncached greedy decoding token for token); every other model gets no extra arguments. Saved
checkpoints of such models say ``use_cache=False``, so plain transformers runs them uncached.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator

from torch import nn

from .registry import find_family


@functools.cache  # one class, built on first use (transformers is imported lazily)
def _counting_cache_class() -> type:
    from transformers import DynamicCache

    class TokenCountingCache(DynamicCache):
        """A DynamicCache that answers length questions from a token count when it has no attention layer."""

        def __init__(self, config: Any) -> None:
            super().__init__(config=config)
            self.tokens_seen = 0

        def get_seq_length(self, layer_idx: int = 0) -> int:
            try:
                return super().get_seq_length(layer_idx)
            except ValueError:
                return self.tokens_seen

        def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
            try:
                return super().get_mask_sizes(query_length, layer_idx)
            except ValueError:
                return self.tokens_seen + query_length, 0

    return TokenCountingCache


def needs_counting_cache(model: nn.Module) -> bool:
    """Whether the model's family says its cache cannot size itself for this shape
    (a NemotronH without attention layers; see ``ModelFamily.needs_counting_cache``)."""
    config = getattr(model, "config", None)
    family = find_family(getattr(config, "model_type", None))
    return family is not None and family.needs_counting_cache(family.arch_from_config(config))


@contextmanager
def generation_kwargs(model: nn.Module) -> Iterator[dict[str, Any]]:
    """Extra ``model.generate`` arguments for one call: ``{}`` or a fresh token-counting cache."""
    if not needs_counting_cache(model):
        yield {}
        return
    cache = _counting_cache_class()(model.config)

    def count(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        if kwargs.get("past_key_values") is cache:
            tokens = kwargs.get("input_ids")
            tokens = kwargs.get("inputs_embeds") if tokens is None else tokens
            cache.tokens_seen += tokens.shape[1]

    handle = model.register_forward_hook(count, with_kwargs=True)
    try:
        yield {"past_key_values": cache, "use_cache": True}  # saved configs say use_cache=False (io.py)
    finally:
        handle.remove()
