"""The switches that reproduce the sources' evaluation: the linear head without BatchNorm (offline and online), the
offline protocol's precision, and the online probe as solo-learn trains it (the run's LARS and schedule, every
large crop), pinned to hand computations in float64."""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from timm.optim import Lars
from torch import nn

from frossl_lit.callbacks import OnlineLinearProbe
from frossl_lit.evaluation import linear_head
from frossl_lit.linear import mixed_precision, protocol
from frossl_lit.methods import StepOutput
from frossl_lit.optim.schedules import warmup_cosine
from frossl_lit.runtime.errors import UserError
from tests.conftest import compose_raw

# -- the linear head and the offline protocol -----------------------------------------------------------------------


def test_the_head_is_bn_then_linear_by_default_and_a_plain_linear_as_the_sources():
    default = linear_head(6, 3)
    assert [type(m) for m in default] == [nn.BatchNorm1d, nn.Linear] and not default[0].affine
    plain = linear_head(6, 3, "linear")
    assert [type(m) for m in plain] == [nn.Linear] and plain[-1].in_features == 6
    x = torch.randn(5, 6)
    torch.testing.assert_close(plain(x), x @ plain[0].weight.T + plain[0].bias)  # no normalisation of the features
    with pytest.raises(UserError, match=r"^linear\.head='bn' must be bn_linear or linear; e\.g\. linear\.head=linear"):
        linear_head(6, 3, "bn", key="linear.head")


def test_linear_from_run_takes_the_published_head_and_precision_and_the_command_line_wins():
    standard = compose_raw(["ckpt=x"], "evaluate").linear
    assert standard.head == "bn_linear" and standard.precision == "32-true"  # today's protocol
    evaluate = compose_raw(["linear=from_run", "ckpt=x"], "evaluate").linear
    run_cfg = OmegaConf.create({"linear_eval": {"head": "linear", "precision": "16-mixed", "optimizer": "sgd"}})
    settings = protocol(evaluate, run_cfg, ["linear=from_run"])
    assert settings.head == "linear" and settings.precision == "16-mixed" and settings.epochs == standard.epochs
    settings = protocol(evaluate, run_cfg, ["linear=from_run", "linear.head=bn_linear", "linear.precision=32-true"])
    assert settings.head == "bn_linear" and settings.precision == "32-true"
    bare = protocol(evaluate, OmegaConf.create({"linear_eval": {"optimizer": "adam"}}), [])
    assert bare.head == "bn_linear" and bare.precision == "32-true"  # a preset that says nothing: the defaults


def test_the_linear_precision_is_autocast_as_lightning_runs_it(capsys):
    cpu = torch.device("cpu")
    autocast, scaler = mixed_precision("32-true", cpu)
    layer, x = nn.Linear(4, 2), torch.randn(3, 4)
    with autocast():
        assert layer(x).dtype == torch.float32 and scaler is None
    for precision in ("bf16-mixed", "16-mixed", "16"):
        autocast, scaler = mixed_precision(precision, cpu)
        with autocast():
            assert layer(x).dtype == torch.bfloat16 and scaler is None  # fp16 on a CPU: bf16, as Lightning does
    assert capsys.readouterr().err.count("linear.precision=16-mixed on cpu: no fp16 autocast there") == 2
    assert mixed_precision(32, cpu)[1] is None
    with pytest.raises(UserError, match=r"^linear\.precision='64-true' must be 32-true, bf16-mixed or 16-mixed"):
        mixed_precision("64-true", cpu)


# -- the online probe ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class WithLargeViews(StepOutput):
    """A step output with every large view's features (``StepOutput.large_features``)."""

    large_features: list[torch.Tensor] | None = None


def _outputs(features: list[torch.Tensor], labels: torch.Tensor) -> dict:
    step = WithLargeViews(loss=torch.tensor(0.0), parts={}, features=features[0], embeddings=features[0],
                          labels=labels, method="x", large_features=features)
    return step.for_lightning(step.loss)


def _fit_start(probe: OnlineLinearProbe, dim=4, classes=3, batch_size=128, reference=256, optimizer=None,
               scheduler=None, world_size=1, gathered=None):
    """The probe set up against a stand-in trainer and method (what it reads of them, nothing more)."""
    trainer = SimpleNamespace(datamodule=SimpleNamespace(num_classes=classes), world_size=world_size,
                              accumulate_grad_batches=1, global_step=0)
    module = SimpleNamespace(
        backbone=SimpleNamespace(out_dim=dim), device=torch.device("cpu"), log=lambda *a, **k: None,
        optimizer_factory=optimizer, scheduler_factory=scheduler, lr_reference_batch=reference, batch_size=batch_size,
        _schedule_length=lambda: (20, 5), all_gather=gathered)
    probe.setup(trainer, module, "fit")
    probe.on_fit_start(trainer, module)
    return trainer, module


def _lars_by_hand(weight, grad, buffer, lr, eta, momentum):
    """solo-learn's LARS (vturrisi/solo-learn@9187ea3 solo/utils/lars.py, ``step``) of a weight without weight decay:
    the trust ratio eta·‖w‖/‖g‖, clipped at lr (``clip_lr``), then plain momentum SGD."""
    ratio = eta * weight.norm() / (grad.norm() + 1e-8)
    ratio = min(ratio / lr, 1.0)
    step = grad * ratio
    buffer = step.clone() if buffer is None else momentum * buffer + step
    return weight - lr * buffer, buffer


def _sgd_by_hand(value, grad, buffer, lr, momentum):
    buffer = grad.clone() if buffer is None else momentum * buffer + grad
    return value - lr * buffer, buffer


@pytest.mark.parametrize("scale", [1.0, 300.0])  # small gradients: the ratio is clipped (at times); large: never
def test_a_pretraining_probe_step_on_lars_is_the_hand_computed_lars_and_momentum_sgd_update(scale):
    torch.set_default_dtype(torch.float64)
    try:
        lars = functools.partial(Lars, lr=0.3, momentum=0.9, weight_decay=1e-4, trust_coeff=0.02, trust_clip=True)
        probe = OnlineLinearProbe(optimizer="pretraining", lr=0.1, head="linear", seed=3)
        trainer, module = _fit_start(probe, optimizer=lars)  # global batch 128 / reference 256: lr 0.05
        lr = 0.1 * 128 / 256
        assert [g["lr"] for g in probe.optimizer.param_groups] == [lr, lr]
        assert [g["weight_decay"] for g in probe.optimizer.param_groups] == [0.0, 0.0]
        assert [g["always_adapt"] for g in probe.optimizer.param_groups] == [True, False]
        layer = probe.head[-1]
        weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
        w_buffer = b_buffer = None
        generator = torch.Generator().manual_seed(0)
        clipped = []
        for step in range(3):
            features = torch.randn(16, 4, generator=generator) * scale
            labels = torch.randint(0, 3, (16,), generator=generator)
            probability = torch.softmax(features @ weight.T + bias, dim=1)
            error = (probability - F.one_hot(labels, 3)) / 16  # d(mean cross-entropy)/d(logits)
            w_grad, b_grad = error.T @ features, error.sum(0)
            clipped.append(bool(0.02 * weight.norm() / w_grad.norm() / lr >= 1))
            weight, w_buffer = _lars_by_hand(weight, w_grad, w_buffer, lr, 0.02, 0.9)
            bias, b_buffer = _sgd_by_hand(bias, b_grad, b_buffer, lr, 0.9)
            probe.on_train_batch_end(trainer, module, _outputs([features], labels), None, step)
            torch.testing.assert_close(layer.weight.detach(), weight, atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(layer.bias.detach(), bias, atol=1e-12, rtol=1e-10)
        assert (True in clipped) if scale == 1.0 else not any(clipped)  # both branches of the clip are pinned
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_pretraining_probe_follows_the_runs_schedule_once_per_optimizer_step():
    sgd = functools.partial(torch.optim.SGD, lr=0.3, momentum=0.9)
    schedule = functools.partial(warmup_cosine, warmup_epochs=1, warmup_start_lr=3e-5, min_lr=0.0)
    probe = OnlineLinearProbe(optimizer="pretraining", lr=0.1, head="linear")
    trainer, module = _fit_start(probe, optimizer=sgd, scheduler=schedule, batch_size=512)  # peak 0.1 × 2
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    expected = warmup_cosine(reference, total_steps=20, steps_per_epoch=5, warmup_epochs=1, warmup_start_lr=3e-5, min_lr=0.0)
    features, labels = torch.randn(8, 4), torch.arange(8) % 3
    for step in range(20):
        assert probe.optimizer.param_groups[0]["lr"] == pytest.approx(expected.get_last_lr()[0], abs=1e-12)
        trainer.global_step = step + 1  # the run's optimizer stepped before on_train_batch_end
        probe.on_train_batch_end(trainer, module, _outputs([features], labels), None, step)
        reference.step()
        expected.step()
    assert probe.scheduler.last_epoch == 20 and probe.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    state = probe.state_dict()
    assert state["scheduler"]["last_epoch"] == 20 and state["optimizer"] is not None


def test_the_large_views_probe_averages_the_loss_over_every_large_view():
    views = [torch.randn(8, 4, generator=torch.Generator().manual_seed(v)) for v in range(3)]
    labels = torch.arange(8) % 3
    steps = {}
    for choice in ("first", "large"):
        probe = OnlineLinearProbe(optimizer=lambda params: torch.optim.SGD(params, lr=1.0), head="linear", views=choice)
        trainer, module = _fit_start(probe)
        start = [p.detach().clone() for p in probe.head.parameters()]
        probe.on_train_batch_end(trainer, module, _outputs(views, labels), None, 0)
        steps[choice] = [a - p.detach() for a, p in zip(start, probe.head.parameters())]  # lr 1: the gradient
    head = linear_head(4, 3, "linear")
    for choice, used in (("first", views[:1]), ("large", views)):
        head.load_state_dict({"0.weight": start[0], "0.bias": start[1]})  # every probe starts from the seeded head
        head.zero_grad()
        (sum(F.cross_entropy(head(v), labels) for v in used) / len(used)).backward()
        for got, parameter in zip(steps[choice], head.parameters()):
            torch.testing.assert_close(got, parameter.grad)


def test_under_ddp_the_large_views_of_every_rank_are_gathered_view_by_view():
    """Two ranks' features (a stand-in all_gather): the step equals one process's step on the concatenated batch."""
    views = [torch.randn(8, 4, generator=torch.Generator().manual_seed(v)) for v in range(2)]
    labels = torch.arange(8) % 3
    other = [v.flip(0) + 1 for v in views]
    gathered = lambda x: torch.stack([x, torch.stack(other) if x.ndim == 3 else labels.flip(0)])
    probes = {}
    for name, world, outputs in (("ddp", 2, _outputs(views, labels)),
                                 ("one", 1, _outputs([torch.cat([v, o]) for v, o in zip(views, other)],
                                                     torch.cat([labels, labels.flip(0)])))):
        probes[name] = OnlineLinearProbe(head="linear", views="large")
        trainer, module = _fit_start(probes[name], world_size=world, gathered=gathered)
        probes[name].on_train_batch_end(trainer, module, outputs, None, 0)
    for a, b in zip(probes["ddp"].head.parameters(), probes["one"].head.parameters()):
        torch.testing.assert_close(a, b)


def test_the_probes_new_options_refuse_bad_values_in_one_line():
    cases = [
        (dict(optimizer="lars"), r"^callbacks\.probe\.optimizer='lars' must be an optimizer partial or the word pretraining"),
        (dict(optimizer="pretraining"), r"^callbacks\.probe\.lr=None must be > 0 with optimizer=pretraining"),
        (dict(lr=0.1), r"^callbacks\.probe\.lr=0\.1 applies to optimizer=pretraining only"),
        (dict(views="all"), r"^callbacks\.probe\.views='all' must be first or large"),
        (dict(head="mlp"), r"^callbacks\.probe\.head='mlp' must be bn_linear or linear"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UserError, match=message):
            OnlineLinearProbe(**kwargs)


def test_the_probe_options_compose_from_the_command_line_and_default_to_todays_probe():
    from hydra.utils import instantiate

    default = instantiate(compose_raw([]).callbacks.probe)
    assert (default.head_kind, default.views, default.lr, default.pretraining) == ("bn_linear", "first", None, False)
    solo = compose_raw(["callbacks.probe.optimizer=pretraining", "callbacks.probe.lr=0.1", "callbacks.probe.head=linear",
                        "callbacks.probe.views=large"]).callbacks.probe
    probe = instantiate(solo)
    assert (probe.head_kind, probe.views, probe.lr, probe.pretraining) == ("linear", "large", 0.1, True)


def test_a_run_with_solo_learns_probe_resumes_bit_for_bit(tmp_path):
    """The probe on the run's LARS and warm-up cosine (schedule=paper): weights, optimizer and schedule of the probe
    resume with the run, bit for bit (tests/runtime/test_resume.py's kill-and-resume)."""
    from tests.runtime.test_resume import SHORT, STEPS, _assert_same, assert_resumes_bit_for_bit

    views = "large" if "large_features" in StepOutput.__dataclass_fields__ else "first"  # see the report's patch
    run = [*SHORT, "schedule=paper", "schedule.lr_scheduler.warmup_epochs=1", "callbacks.knn=null",
           "callbacks.checkpoint_best=null", "callbacks.probe.optimizer=pretraining", "callbacks.probe.lr=0.1",
           "callbacks.probe.head=linear", f"callbacks.probe.views={views}"]
    assert_resumes_bit_for_bit(run, tmp_path)
    probes = [torch.load(tmp_path / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
              ["callbacks"]["OnlineLinearProbe"] for name in ("whole", "resumed")]
    _assert_same(probes[0], probes[1], "probe")
    assert probes[0]["scheduler"]["last_epoch"] == STEPS and list(probes[0]["head"]) == ["0.weight", "0.bias"]
    assert [g["always_adapt"] for g in probes[0]["optimizer"]["param_groups"]] == [True, False]


def test_solo_learns_probe_reads_nothing_back_from_the_device_in_a_quiet_step(tmp_path, monkeypatch):
    """LARS's trust ratio, the schedule and the large views add no host read (tests/test_step_syncs.py's count)."""
    from tests.test_step_syncs import _count_reads

    views = "large" if "large_features" in StepOutput.__dataclass_fields__ else "first"
    probe = ["schedule=paper", "callbacks.probe.optimizer=pretraining", "callbacks.probe.lr=0.1",
             "callbacks.probe.head=linear", f"callbacks.probe.views={views}"]
    trainer, counter, _ = _count_reads(tmp_path, monkeypatch, overrides=probe)
    assert trainer.global_step == 13 and counter.quiet_steps
    assert counter.reads == [], "host reads in quiet steps:\n" + "\n".join(map(str, counter.reads))


def test_the_offline_protocol_runs_with_a_plain_linear_head_under_mixed_precision(tmp_path):
    from frossl_lit.linear import linear_evaluation
    from frossl_lit.train import train
    from tests.conftest import TINY, compose_config

    run = compose_config([*TINY, "trainer.max_steps=2", "callbacks.knn=null", "callbacks.probe=null",
                          "callbacks.checkpoint_best=null"], tmp_path / "run")
    train(run)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(run, tmp_path / "run" / ".hydra" / "config.yaml")  # what the CLI's Hydra writes
    cfg = compose_raw([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", f"paths.output_dir={tmp_path}",
                       "linear.head=linear", "linear.precision=bf16-mixed", "linear.epochs=1", "linear.augment=false"],
                      "evaluate")
    result = linear_evaluation(cfg)
    assert result["protocol"]["head"] == "linear" and result["protocol"]["precision"] == "bf16-mixed"
    assert 0.0 <= result["linear_top1"] <= 1.0
