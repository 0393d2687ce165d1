"""Stand-in for the hub's remote modeling code: transformers' model, shaped by the remote config."""
from transformers import NemotronHConfig as _NativeConfig
from transformers import NemotronHForCausalLM as _Native

from .configuration_nemotron_h import NemotronHConfig

_NOT_FIELDS = ("auto_map", "architectures", "model_type", "transformers_version", "hybrid_override_pattern",
               "num_hidden_layers", "attention_head_dim")


class NemotronHForCausalLM(_Native):
    config_class = NemotronHConfig

    def __init__(self, config):
        fields = {k: v for k, v in config.to_dict().items() if k not in _NOT_FIELDS}
        fields.update(layers_block_type=config.layers_block_type, head_dim=config.head_dim)
        super().__init__(_NativeConfig(**fields))
