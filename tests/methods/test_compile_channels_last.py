"""model.compile and model.channels_last train the same model as eager (first-step loss within 1e-4), checkpoints
keep their parameter names, and trainer=gpu turns on what pays on a GPU."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import LossRecorder, compose_raw, tiny_fit, tiny_method


def _first_losses(tmp_path, steps: int = 2, **options) -> tuple[list[float], torch.nn.Module]:
    torch.manual_seed(0)
    recorder, module = LossRecorder(), tiny_method(**options)
    tiny_fit(tmp_path, [recorder], module=module, max_steps=steps)
    return recorder.losses, module


@pytest.mark.parametrize("options", [{"channels_last": True}, {"compile": {"backend": "aot_eager"}},
                                     {"compile": {"backend": "aot_eager"}, "channels_last": True}],
                         ids=["channels_last", "compile", "both"])
def test_the_first_step_matches_eager(options, tmp_path):
    eager, _ = _first_losses(tmp_path / "eager")
    fast, module = _first_losses(tmp_path / "fast", **options)
    assert fast[0] == pytest.approx(eager[0], abs=1e-4) and fast[1] == pytest.approx(eager[1], rel=1e-3)
    assert all(not key.count("_orig_mod") for key in module.state_dict())  # checkpoints load either way
    compiled = "compile" in options
    assert (module.backbone._compiled_call_impl is not None) == compiled == (module.projector._compiled_call_impl is not None)
    if options.get("channels_last"):
        assert module.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow  # inductor compiles C++ kernels: about a minute cold on 2 cores
def test_inductor_compile_trains_the_same_model(tmp_path):
    eager, _ = _first_losses(tmp_path / "eager")
    compiled, _ = _first_losses(tmp_path / "compiled", compile=True)
    assert compiled[0] == pytest.approx(eager[0], abs=1e-4)


def test_gpu_trainer_turns_on_bf16_channels_last_and_compile():
    cfg = compose_raw(["trainer=gpu"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.model.compile and cfg.model.channels_last
    plain = compose_raw([])
    assert not plain.model.compile and not plain.model.channels_last and plain.trainer.precision == "32-true"
