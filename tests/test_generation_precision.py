"""Template generation and screening run in the search's precision: bf16 autocast where the search
trains in bf16, with the beam's sums still in fp64."""
from __future__ import annotations

import math

import pytest
import torch

from autoprompt_search.auto_template import CausalGenerator
from autoprompt_search.data import load_split
from autoprompt_search.tasks import get_task

from test_search import search_options, write_toy_lmbff


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_lmbff(tmp_path_factory.mktemp("lmbff"))


def _linear_output_dtypes(model) -> tuple[set, list]:
    dtypes: set = set()
    handles = [module.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
               for module in model.modules() if isinstance(module, torch.nn.Linear)]
    return dtypes, handles


def _generate(backbone, train, precision: str):
    generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=4, max_steps=3,
                                device=backbone.device, precision=precision)
    dtypes, handles = _linear_output_dtypes(backbone.model)
    try:
        found = generator.generate(get_task("sst2"), train, progress=False)
    finally:
        for handle in handles:
            handle.remove()
    return found, dtypes


def test_the_causal_generator_runs_its_forwards_in_the_precision_asked(tiny_causal, toy_data):
    train = load_split("sst2", "train", data_dir=toy_data, seed=13)
    fp32, fp32_dtypes = _generate(tiny_causal, train, "fp32")
    bf16, bf16_dtypes = _generate(tiny_causal, train, "bf16")
    assert fp32_dtypes == {torch.float32}
    assert bf16_dtypes == {torch.bfloat16}
    assert bf16 and all(math.isfinite(g.score) for g in bf16)
    # The same search over slightly different logits: the best templates mostly agree.
    assert len({g.template for g in fp32[:4]} & {g.template for g in bf16[:4]}) >= 2


def test_the_search_generates_and_screens_in_its_resolved_precision(tiny_causal, tiny_causal_folder, toy_data,
                                                                    tmp_path, monkeypatch):
    from autoprompt_search.auto_template import causal as causal_mod
    from autoprompt_search.search import generate_templates
    from autoprompt_search.training import trainer as trainer_mod

    made, screened = [], []
    original_init, original_evaluate = causal_mod.CausalGenerator.__init__, trainer_mod.evaluate

    def init(self, *args, **kwargs):
        made.append(kwargs.get("precision"))
        original_init(self, *args, **kwargs)

    def evaluate(*args, **kwargs):
        screened.append(kwargs.get("precision"))
        return original_evaluate(*args, **kwargs)

    monkeypatch.setattr(causal_mod.CausalGenerator, "__init__", init)
    monkeypatch.setattr("autoprompt_search.auto_template.screening.evaluate", evaluate)
    train = load_split("sst2", "train", data_dir=toy_data, seed=13)
    for native, expected in (("1", "bf16"), ("0", "fp32")):
        monkeypatch.setenv("AUTOPROMPT_NATIVE_BF16", native)
        options = search_options(tiny_causal_folder, toy_data, tmp_path / native, generator="causal", n_templates=2,
                                 beam_width=4, generator_steps=3, seeds=(13,), screening_split="train")
        made.clear(), screened.clear()
        generate_templates(options, get_task("sst2"), train, tiny_causal, say=lambda *_: None)
        assert made == [expected]
        assert screened and set(screened) == {expected}
