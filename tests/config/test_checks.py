"""Mistyped values fail first with one line that names the key (frossl_lit.config.checks and .values), and through
the CLI with exit status 2 and at most 3 lines on stderr. A value a constructor checks itself fails when the run
builds it, as one line through the command's error exit (frossl_lit.runtime.errors.exits_on_user_error)."""

from __future__ import annotations

import pytest

from frossl_lit.config.checks import check_config
from frossl_lit.data import datamodule as build_datamodule
from frossl_lit.runtime.errors import PREFIX, UserError, exits_on_user_error
from tests.conftest import compose_config, run_cli

BAD = [
    (["data.batch_size=0"], r"^data\.batch_size=0 must be a positive whole number; the batch per device"),
    (["data.batch_size=-1"], r"^data\.batch_size=-1 "),
    (["augment.num_views=1"], r"^augment\.num_views=1 gives 1 views in all, but FroSSL takes at least 2; set augment\.num_views=2 or more"),
    (["method=vicreg", "augment.num_views=4"], r"^augment\.num_views=4 gives 4 views in all, but VICReg takes exactly 2; set augment\.num_views=2$"),
    (["trainer.max_epochs=0"], r"^trainer\.max_epochs=0 must be >= 1"),
    (["trainer.max_epochs=-1"], r"^trainer\.max_epochs=-1 must be >= 1 \(or -1 with trainer\.max_steps set\)"),
    (["schedule.optimizer.lr=-1"], r"^schedule\.optimizer\.lr=-1 must be a positive finite learning rate"),
    (["callbacks.probe=null"], r"^callbacks\.checkpoint_best\.monitor='val/probe_top1' is logged by callbacks\.probe, which is off; monitor what runs"),
    # a preset's method weights would land on another method: its sibling preset, or drop method=
    (["experiment=frossl_cifar10_laptop", "method=vicreg"],
     r"^method='vicreg' is not the method experiment=frossl_cifar10_laptop sets its weights for; use experiment=vicreg_cifar10_laptop"),
    (["experiment=vicreg_cifar10", "method=mmcr"], r"^method='mmcr' is not the method .*; drop method= to train the preset's own method \(vicreg\)"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_value_names_its_key_and_the_fix(overrides, message, tmp_path):
    cfg = compose_config(overrides, tmp_path)
    with pytest.raises(UserError, match=message):
        check_config(cfg)


# values the DataModule constructors check themselves: the config checks let them through, the build refuses them
BUILT = [
    (["data.val_fraction=1.2"], "data.val_fraction=1.2 must lie strictly between 0 and 1"),
    (["data=folder", "data.root=/nowhere", "data.val_fraction=1.2"], "data.val_fraction=1.2 must lie in [0, 1)"),
    (["data=cifar10", "data.holdout_fraction=1.5"], "data.holdout_fraction=1.5 must lie in [0, 1)"),
    (["data=cifar10", "data.train_fraction=0"], "data.train_fraction=0 must lie in (0, 1]"),
    (["data.tune_fraction=1.5"], "data.tune_fraction=1.5 is a fraction of the training images: it must lie in [0, 1), e.g. 0.2"),
    (["data.format=parquet"], "data.format='parquet' must be one of native, litdata"),
    (["data.format=litdata"], "data.format=litdata needs data.stream=DIR (a folder written by python -m frossl_lit.prepare"),
]


@pytest.mark.parametrize("overrides,line", BUILT, ids=[" ".join(o) for o, _ in BUILT])
def test_a_value_its_constructor_checks_is_one_line_when_the_run_builds_it(overrides, line, tmp_path, capsys):
    cfg = compose_config(overrides, tmp_path)
    check_config(cfg)
    with pytest.raises(SystemExit) as stop, exits_on_user_error():
        build_datamodule(cfg.data)
    lines = [text for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"{PREFIX}{line}"), lines


# values our constructors check themselves, naming the whole key: the run's build (before any data is read) raises
# their UserError itself, not Hydra's InstantiationException around it
CONSTRUCTED = [
    (["callbacks.knn.k=0"], r"^callbacks\.knn\.k=0 must be a positive number of neighbours; e\.g\. callbacks\.knn\.k=20$"),
    (["callbacks.knn.k=100000"], r"^callbacks\.knn\.k=100000 is more than callbacks\.knn\.bank_size=10000, the images in the kNN bank"),
    (["augment.recipes.0.scale=[0.5,0.2]"], r"^augment\.recipes\.0\.scale=\[0\.5, 0\.2\] must be \[min, max\]"),
    (["augment.recipes.0.jitter_prob=1.5"], r"^augment\.recipes\.0\.jitter_prob=1\.5 is a probability: .*; e\.g\. augment\.recipes\.0\.jitter_prob=0\.5$"),
    (["augment=cifar10_asymmetric", "augment.recipes.1.solarize_prob=-0.1"], r"^augment\.recipes\.1\.solarize_prob=-0\.1 is a probability"),
    (["augment=imagenet_multicrop", "augment.small_recipe.size=0"], r"^augment\.small_recipe\.size=0 must be a positive number of pixels"),
    (["method.invariance_weight=-1"], r"^method\.invariance_weight=-1 must be >= 0; e\.g\. method\.invariance_weight=1\.0$"),
    (["method=vicreg", "method.invariance_weight=-1"], r"^method\.invariance_weight=-1 must be >= 0"),
    (["method=simsiam", "method.predictor=null"], r"^method\.predictor=None is needed: SimSiam predicts one branch from the other; .*simsiam\.yaml"),
]


@pytest.mark.parametrize("overrides,message", CONSTRUCTED, ids=[" ".join(o) for o, _ in CONSTRUCTED])
def test_a_value_its_constructor_checks_names_its_whole_key_when_the_run_builds_it(overrides, message, tmp_path):
    from frossl_lit.train import build

    cfg = compose_config(overrides, tmp_path)
    check_config(cfg)
    with pytest.raises(UserError, match=message):
        build(cfg)


@pytest.mark.parametrize("overrides", [[], ["method=vicreg"], ["augment.num_views=8"], ["trainer.max_epochs=-1", "trainer.max_steps=5"],
                                       ["trainer.fast_dev_run=true", "trainer.max_epochs=0"],
                                       ["callbacks.probe=null", "callbacks.checkpoint_best.monitor=val/knn_top1"],
                                       ["callbacks.probe=null", "callbacks.checkpoint_best=null"],
                                       ["experiment=barlow_twins_cifar10_laptop"], ["experiment=frossl_cifar10_laptop", "method=frossl"],
                                       ["data.tune_fraction=0.1"]])
def test_good_configs_pass(overrides, tmp_path):
    check_config(compose_config(overrides, tmp_path))


@pytest.mark.slow  # 8-11 s: the train command in a real process; make test runs it in-process (test_bad_inputs.py)
@pytest.mark.parametrize("override,key", [("data.batch_size=0", "data.batch_size=0")])  # every other key: in-process above
def test_cli_exits_2_with_at_most_three_lines_before_anything_heavy(override, key, tmp_path):
    result = run_cli([override, f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(result.stderr.splitlines()) <= 3, result.stderr
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "csv").exists()  # nothing ran: no logger, no kNN pass


@pytest.mark.slow  # 8-12 s; in make test as a row of tests/test_bad_inputs.py (in-process)
def test_batch_larger_than_the_dataset_names_the_key(tmp_path):
    result = run_cli(["data.batch_size=5000", "callbacks.knn.at_start=false", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "data.batch_size=5000 × 1 device(s) is more than the 1437 training images" in result.stderr
