"""Stand-in for the hub's remote NemotronHConfig: reads only the hub's spellings."""
from transformers import PretrainedConfig

KINDS = {"M": "linear_attention", "*": "full_attention", "-": "mlp"}


class NemotronHConfig(PretrainedConfig):
    model_type = "nemotron_h"

    def __init__(self, hybrid_override_pattern="M*", num_hidden_layers=2, attention_head_dim=128, **kwargs):
        if len(hybrid_override_pattern) != num_hidden_layers:
            raise ValueError("hybrid_override_pattern and num_hidden_layers disagree")
        self.hybrid_override_pattern = hybrid_override_pattern
        self.num_hidden_layers = num_hidden_layers
        self.head_dim = attention_head_dim
        super().__init__(**kwargs)

    @property
    def layers_block_type(self):
        return [KINDS[c] for c in self.hybrid_override_pattern]
