"""The laptop presets' equal tuning (experiments/laptop_cifar10.py --tune): every method the same trials over its
own invariance weight and lr, and each trial's overrides compose into a valid config."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from experiments import harness, laptop_cifar10
from frossl_lit.config.compose import compose_train_config, settings_changed


@pytest.mark.parametrize("method", sorted(laptop_cifar10.WEIGHTS))
def test_every_method_gets_the_same_number_of_trials_and_they_compose(method, tmp_path):
    weights, lrs = laptop_cifar10.trials(method), laptop_cifar10.trials(method, best=0.5)
    assert len(weights) == len(laptop_cifar10.FACTORS) and len(lrs) == len(laptop_cifar10.LR_FACTORS)
    key, published, _ = laptop_cifar10.WEIGHTS[method]
    for _, overrides in [*weights, *lrs]:
        cfg = compose_train_config([f"experiment={method}_cifar10_laptop", *overrides], tmp_path)
        assert cfg.method._target_.lower().endswith(method.replace("_", "")), cfg.method._target_
        for override in overrides:
            name, value = override.split("=")
            assert OmegaConf.select(cfg, name) == pytest.approx(float(value))
    preset = compose_train_config([f"experiment={method}_cifar10_laptop"], tmp_path)
    assert preset.schedule.optimizer.lr == laptop_cifar10.LR  # the lr trials scale the preset's own lr


def test_the_invariance_factor_maps_onto_each_methods_own_weight():
    assert [o for _, (o,) in laptop_cifar10.trials("frossl")] == [f"method.invariance_weight={v:g}" for v in (2, 1, 0.5, 0.25, 0.125)]
    assert [o for _, (o,) in laptop_cifar10.trials("vicreg")] == [f"method.invariance_weight={v:g}" for v in (50, 25, 12.5, 6.25, 3.125)]
    # Barlow Twins' λ weighs redundancy reduction: invariance ×2 is λ ×½
    assert [o for _, (o,) in laptop_cifar10.trials("barlow_twins")] == [f"method.off_diagonal_weight={v:g}" for v in (0.00255, 0.0051, 0.0102, 0.0204, 0.0408)]
    assert laptop_cifar10.trials("vicreg", best=0.5)[1][1] == ["method.invariance_weight=12.5", "schedule.optimizer.lr=0.004"]


def test_a_run_directory_of_other_settings_is_refused_in_one_line_and_its_advice_works(tmp_path):
    """The harness reuses (or resumes) a run directory only when its recorded config is what the overrides compose
    now: other overrides, and a preset edited since the run, are both refused; another --runs-dir runs."""
    overrides = ["experiment=frossl_cifar10_laptop", "data.root=A", "method.invariance_weight=1"]
    run_dir = tmp_path / "runs" / "tune_frossl_1_0.002"
    (run_dir / ".hydra").mkdir(parents=True)
    recorded = compose_train_config([*overrides, "resume.auto=true"], run_dir)  # resumed once: resume differs
    OmegaConf.save(recorded, run_dir / ".hydra" / "config.yaml")
    (run_dir / "summary.json").write_text('{"knn_top1": 0.5}')
    assert harness.train("frossl", overrides, run_dir) == {"knn_top1": 0.5}  # the same trial: reused
    with pytest.raises(SystemExit, match=r"^\[frossl\] .*tune_frossl_1_0.002 holds a run of other settings \(data.root: 'A' there, 'B' now\); pass another --runs-dir"):
        harness.train("frossl", ["experiment=frossl_cifar10_laptop", "data.root=B", "method.invariance_weight=1"], run_dir)
    recorded.method.projector.out_dim = 2048  # a preset edited after the run, the overrides unchanged
    OmegaConf.save(recorded, run_dir / ".hydra" / "config.yaml")
    with pytest.raises(SystemExit, match=r"\(method.projector.out_dim: 2048 there, 1024 now\)"):
        harness.train("frossl", overrides, run_dir)
    assert settings_changed(overrides, tmp_path / "other" / "tune_frossl_1_0.002") == []  # the advice: that one runs
    assert settings_changed(["experiment=no_such_preset"], run_dir) == []  # left to the run's own one line
    (run_dir / ".hydra" / "config.yaml").write_text("method:\n  _target_: [unclosed\n")  # a truncated record
    with pytest.raises(SystemExit, match=r"config.yaml: 'unreadable' there, 'composed' now\); pass another --runs-dir"):
        harness.train("frossl", overrides, run_dir)


@pytest.mark.parametrize("argv, message", [(["--tune", "--methods", "simclr"], "--tune has trials for frossl, vicreg, barlow_twins, not simclr"),
                                           (["--tune", "--tune-seconds", "0"], "invalid positive value: '0'")])
def test_wrong_tuning_options_get_one_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        laptop_cifar10.main(argv)
    assert message in capsys.readouterr().err
