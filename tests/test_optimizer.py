import pytest
import torch

from autoprompt_search.training.optimizer import adamw


def _train(implementation: str, steps: int = 5) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    # float64: in float32 the fused kernel's vectorised arithmetic rounds differently from the default's on
    # some CPUs (1.5e-6 on a CI machine), so only double precision gives a tolerance that no CPU breaks while
    # any difference in the update rule fails (dropping weight decay alone changes these weights by up to 2e-3;
    # the two implementations differ by 3e-16 here).
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16), torch.nn.LayerNorm(16)).double()
    initial = [p.detach().clone() for p in model.parameters()]
    optimizer = adamw(model.parameters(), lr=1e-2, weight_decay=0.01, implementation=implementation)
    inputs = torch.randint(0, 50, (4, 7))
    for _ in range(steps):
        loss = model(inputs).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return initial, [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_is_used_on_cpu_and_matches_the_default_update():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert adamw(params, lr=1e-3, weight_decay=0.0).defaults["fused"] is True
    assert not adamw(params, lr=1e-3, weight_decay=0.0, implementation="default").defaults["fused"]
    (initial, fused), (_, default) = _train("fused"), _train("default")
    assert max((f - i).abs().max().item() for f, i in zip(fused, initial)) > 1e-3  # the steps moved the weights
    for a, b in zip(fused, default):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_falls_back_where_a_device_has_no_kernel(monkeypatch):
    import torch.utils._foreach_utils as foreach_utils

    monkeypatch.setattr(foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    optimizer = adamw([torch.nn.Parameter(torch.zeros(3))], lr=1e-3, weight_decay=0.0)
    assert not optimizer.defaults["fused"]


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match="fused"):
        adamw([torch.nn.Parameter(torch.zeros(3))], lr=1e-3, weight_decay=0.0, implementation="sgd")
