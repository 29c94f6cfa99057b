"""CorInfoMax: the loss and the new running estimates equal an independent float64 numpy transcription of the
paper's objective (several α, forgetting factors, ε, with and without the normalisation), the gradient equals that of
a line-by-line transcription of the sources' stateful loss over consecutive steps, 2 DDP ranks equal one process on
the concatenated batch for the loss, its gradient and the new estimates; the method stores the step's estimates
after the optimizer step (the mean of the micro-batches' with accumulation), keeps them in every checkpoint,
resumes them bit for bit, and refuses bad values before the run."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from frossl_lit.losses.corinfomax import RunningMoments, corinfomax_loss
from frossl_lit.methods import Branches
from frossl_lit.methods.corinfomax import CorInfoMax
from frossl_lit.runtime.distributed import LOCAL, Collective
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, tiny_fit, tiny_method
from tests.ddp_harness import (
    LOCAL_BATCH,
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    problem,
    run_on_two_ranks,
)


def reference(z1, z2, covariances, means, alpha, la_r, la_mu, eps, normalize):
    """The paper's objective with the sources' running estimates, in numpy float64: returns (total, L_cov, L_inv,
    new covariances, new means)."""
    views = [np.asarray(z, dtype=np.float64) for z in (z1, z2)]
    if normalize:
        views = [z / np.sqrt((z * z).sum(axis=1, keepdims=True)) for z in views]
    n, d = views[0].shape
    cov_loss, new_r, new_mu = 0.0, [], []
    for v, z in enumerate(views):
        mu = la_mu * means[v] + (1 - la_mu) * z.mean(axis=0)
        centred = z - mu
        r = la_r * covariances[v] + (1 - la_r) * (centred.T @ centred) / n
        sign, logdet = np.linalg.slogdet(r + eps * np.eye(d))
        assert sign > 0
        cov_loss -= logdet / d
        new_r.append(r)
        new_mu.append(mu)
    inv_loss = ((views[0] - views[1]) ** 2).sum() / (n * d)
    return cov_loss + alpha * inv_loss, cov_loss, inv_loss, np.stack(new_r), np.stack(new_mu)


def _spd(dim, seed, batch=2):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64)
    return a @ a.transpose(1, 2) / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def _views(n=11, d=6, seed=3, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(n, d, generator=generator, dtype=torch.float64)).requires_grad_(True) for _ in range(2)]


@pytest.mark.parametrize("alpha,la_r,la_mu,eps,normalize", [
    (500.0, 0.01, 0.01, 1e-6, True),     # the FroSSL fork's code defaults
    (250.0, 0.01, 0.01, 1e-8, True),     # the official CIFAR-10 run
    (1000.0, 0.1, 0.1, 1e-6, True),      # the official Tiny ImageNet forgetting factors
    (0.0, 0.5, 0.9, 1e-3, False),        # no invariance, slow estimates, raw embeddings
    (3.0, 1.0, 0.0, 1e-2, False),        # λ_R = 1: the covariance never moves (no gradient through it)
])
def test_equals_the_formula_in_float64(alpha, la_r, la_mu, eps, normalize):
    views = _views(scale=2.0)
    covariances, means = _spd(6, 1), 0.1 * torch.randn(2, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    total, parts, state = corinfomax_loss(views, covariances, means, alpha, la_r, la_mu, eps, normalize)
    expected = reference(*[z.detach().numpy() for z in views], covariances.numpy(), means.numpy(), alpha, la_r, la_mu, eps, normalize)
    assert total.item() == pytest.approx(expected[0], rel=1e-10)
    assert parts["covariance"].item() == pytest.approx(expected[1], rel=1e-10)
    assert parts["invariance"].item() == pytest.approx(expected[2], rel=1e-10, abs=1e-15)
    np.testing.assert_allclose(state.covariances.numpy(), expected[3], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(state.means.numpy(), expected[4], rtol=1e-10, atol=1e-14)
    assert not state.covariances.requires_grad and not state.means.requires_grad
    assert state.covariances.dtype == state.means.dtype == torch.float64


class SourceLoss:
    """The sources' stateful loss, line by line (OFSkean/FroSSL@e841c57 solo/losses/corinfomax.py, the same maths as
    serdarozsoy/corinfomax-ssl@c0b917e cifars-tiny/loss.py + F.mse_loss), on the CPU: float64 state mutated per call."""

    def __init__(self, dim, r_ini, la_r, la_mu, eps, alpha):
        self.R1, self.R2 = r_ini * torch.eye(dim, dtype=torch.float64), r_ini * torch.eye(dim, dtype=torch.float64)
        self.mu1, self.mu2 = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
        self.la_R, self.la_mu, self.alpha = la_r, la_mu, alpha
        self.R_eps = eps * torch.eye(dim, dtype=torch.float64)

    def __call__(self, z1, z2):
        z1, z2 = torch.nn.functional.normalize(z1, p=2), torch.nn.functional.normalize(z2, p=2)
        n, d = z1.size()
        new_mu1 = self.la_mu * self.mu1 + (1 - self.la_mu) * torch.mean(z1, 0)
        new_mu2 = self.la_mu * self.mu2 + (1 - self.la_mu) * torch.mean(z2, 0)
        z1_hat, z2_hat = z1 - new_mu1, z2 - new_mu2
        new_r1 = self.la_R * self.R1 + (1 - self.la_R) * (z1_hat.T @ z1_hat) / n
        new_r2 = self.la_R * self.R2 + (1 - self.la_R) * (z2_hat.T @ z2_hat) / n
        cov_loss = -(torch.logdet(new_r1 + self.R_eps) + torch.logdet(new_r2 + self.R_eps)) / d
        total = cov_loss + self.alpha * torch.nn.functional.mse_loss(z1, z2)
        self.R1, self.mu1, self.R2, self.mu2 = new_r1.detach(), new_mu1.detach(), new_r2.detach(), new_mu2.detach()
        return total


def test_the_gradient_and_state_over_consecutive_steps_equal_the_sources_stateful_loss():
    source = SourceLoss(6, 1.0, 0.3, 0.2, 1e-6, 250.0)
    covariances, means = torch.eye(6, dtype=torch.float64).expand(2, 6, 6).clone(), torch.zeros(2, 6, dtype=torch.float64)
    for step in range(3):
        ours, theirs = _views(seed=10 + step), _views(seed=10 + step)
        covariances.requires_grad_(True)  # the old estimate must carry no gradient
        total, _, state = corinfomax_loss(ours, covariances, means, 250.0, 0.3, 0.2, 1e-6, True)
        total.backward()
        expected = source(*theirs)
        expected.backward()
        assert total.item() == pytest.approx(expected.item(), rel=1e-12)
        for mine, reference_view in zip(ours, theirs):
            assert mine.grad is not None and mine.grad.abs().sum() > 0
            torch.testing.assert_close(mine.grad, reference_view.grad, rtol=1e-10, atol=1e-14)
        assert covariances.grad is None
        torch.testing.assert_close(state.covariances, torch.stack([source.R1, source.R2]), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(state.means, torch.stack([source.mu1, source.mu2]), rtol=1e-12, atol=1e-15)
        covariances, means = state.covariances, state.means


def test_float32_embeddings_are_computed_against_float64_estimates_like_the_sources():
    views = [z.detach().float() for z in _views()]
    total, parts, state = corinfomax_loss(views, _spd(6, 1), torch.zeros(2, 6, dtype=torch.float64))
    assert total.dtype == parts["covariance"].dtype == torch.float32 and state.covariances.dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # half-precision embeddings are cast up by float32_maths
        half, _, _ = corinfomax_loss([v.bfloat16() for v in views], _spd(6, 1), torch.zeros(2, 6, dtype=torch.float64))
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_bad_inputs_are_refused():
    z, r, mu = [torch.randn(4, 3)] * 2, torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="2 views"):
        corinfomax_loss([z[0]] * 3, r, mu)
    with pytest.raises(ValueError, match="one shape"):
        corinfomax_loss([z[0], torch.randn(4, 2)], r, mu)
    with pytest.raises(ValueError, match=r"covariance \(2, 3, 3\) and mean \(2, 3\)"):
        corinfomax_loss(z, torch.eye(3), mu)
    with pytest.raises(ValueError, match=r"covariance \(2, 3, 3\) and mean \(2, 3\)"):
        corinfomax_loss(z, r, torch.zeros(3))
    with pytest.raises(ValueError, match="invariance_weight=-1"):
        corinfomax_loss(z, r, mu, invariance_weight=-1)
    with pytest.raises(ValueError, match=r"covariance_forgetting=1.5 must be a forgetting factor in \[0, 1\]"):
        corinfomax_loss(z, r, mu, covariance_forgetting=1.5)
    with pytest.raises(ValueError, match=r"mean_forgetting=-0.1 must be"):
        corinfomax_loss(z, r, mu, mean_forgetting=-0.1)
    with pytest.raises(ValueError, match="epsilon=0"):
        corinfomax_loss(z, r, mu, epsilon=0.0)


# -- DDP: 2 gloo ranks = one process on the concatenated batch, for the loss, its gradient and the new estimates ---
DIM = 5  # the harness's projection width
HYPER = dict(invariance_weight=250.0, covariance_forgetting=0.3, mean_forgetting=0.2, epsilon=1e-6, normalize=True)
START = RunningMoments(_spd(DIM, 7), 0.1 * torch.randn(2, DIM, generator=torch.Generator().manual_seed(8), dtype=torch.float64))


def _corinfomax(views, collective):
    total, parts, _ = corinfomax_loss(views, START.covariances, START.means, **HYPER, collective=collective)
    return total, parts


def _two_steps(views, collective):
    """The estimates after two steps on these views (the second reads the first's), with ``collective``."""
    state = START
    for _ in range(2):
        state = corinfomax_loss(views, state.covariances, state.means, **HYPER, collective=collective)[2]
    return state


def _projected(rows=slice(None)):
    inputs, weight = problem("corinfomax")
    return [x[rows] @ weight for x in inputs]


def _states_on_rank(rank: int) -> dict:
    mine = _projected(slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH))
    shared, own = _two_steps(mine, Collective(global_batch=True)), _two_steps(mine, Collective(global_batch=False))
    return {"global_covariances": shared.covariances, "global_means": shared.means,
            "own_covariances": own.covariances, "own_means": own.means}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks({"corinfomax": _corinfomax}, extra=_states_on_rank)


def test_global_batch_exact_on_two_processes(distributed_results):
    assert_global_batch_exact(distributed_results, "corinfomax", _corinfomax)
    assert_per_gpu_is_each_ranks_own(distributed_results, "corinfomax", _corinfomax)


def test_the_estimates_are_those_of_the_global_batch_on_every_rank(distributed_results):
    single = _two_steps(_projected(), LOCAL)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["global_covariances"], single.covariances, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(distributed_results[rank]["global_means"], single.means, rtol=1e-12, atol=1e-14)
        own = _two_steps(_projected(slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)), LOCAL)
        torch.testing.assert_close(distributed_results[rank]["own_covariances"], own.covariances, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(distributed_results[rank]["own_means"], own.means, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(distributed_results[0]["own_covariances"], single.covariances)  # the switch matters


# -- the method: state in buffers, stored once per optimizer step ------------------------------------------------
class Recording(CorInfoMax):
    """CorInfoMax that records, for every loss call, the estimates it read and the embeddings it saw."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[tuple] = []

    def loss(self, branches):
        self.calls.append((self.covariances.clone(), self.means.clone(), [z.detach().clone() for z in branches.embeddings]))
        return super().loss(branches)


def test_the_step_stores_the_estimates_of_its_batch_after_the_optimizer_step(tmp_path):
    module = tiny_method(Recording, invariance_weight=250.0, covariance_forgetting=0.2, mean_forgetting=0.3)
    assert module.covariances.dtype == torch.float64 and torch.equal(module.covariances[1], torch.eye(16, dtype=torch.float64))
    after = []

    class After(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            after.append((pl_module.covariances.clone(), pl_module.means.clone()))

    tiny_fit(tmp_path, [After()], module=module, max_steps=3)
    assert len(module.calls) == len(after) == 3
    for (covariances, means, embeddings), stored in zip(module.calls, after):
        expected = corinfomax_loss(embeddings, covariances, means, **module.weights)[2]
        assert torch.equal(stored[0], expected.covariances) and torch.equal(stored[1], expected.means)
    for call, stored in zip(module.calls[1:], after):  # each step reads what the step before stored
        assert torch.equal(call[0], stored[0]) and torch.equal(call[1], stored[1])
    module.eval()
    module.loss(Branches(features=[], embeddings=[torch.randn(8, 16)] * 2))
    assert module._pending == []  # a loss outside training (evaluation, a diagnostic) leaves the estimates alone


def test_with_gradient_accumulation_the_step_stores_the_mean_of_its_micro_batches(tmp_path):
    module = tiny_method(Recording, covariance_forgetting=0.2, mean_forgetting=0.3)
    tiny_fit(tmp_path, [], module=module, max_steps=2, accumulate_grad_batches=2, limit_train_batches=4)
    assert len(module.calls) == 4
    first, second = module.calls[0], module.calls[1]
    assert torch.equal(first[0], second[0])  # both micro-batches of step 1 read the initial estimates
    states = [corinfomax_loss(c[2], c[0], c[1], **module.weights)[2] for c in (first, second)]
    torch.testing.assert_close(module.calls[2][0], (states[0].covariances + states[1].covariances) / 2, rtol=1e-15, atol=0)
    torch.testing.assert_close(module.calls[2][1], (states[0].means + states[1].means) / 2, rtol=1e-15, atol=0)


def test_trains_from_its_config_with_the_estimates_in_the_checkpoint(tmp_path):
    summary = train(compose_config([*TINY, "method=corinfomax", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "corinfomax" and summary["global_step"] == 3
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    covariances, means = state["covariances"], state["means"]
    assert covariances.shape == (2, 32, 32) and means.shape == (2, 32) and covariances.dtype == torch.float64
    torch.testing.assert_close(covariances, covariances.transpose(1, 2))
    assert not torch.allclose(covariances[0], torch.eye(32, dtype=torch.float64)) and means.abs().sum() > 0
    # three steps of λ_R = 0.01: almost all of the estimate is the last batch's covariance of unit rows (trace ≈ 1 − ‖μ‖²)
    assert torch.all(torch.diagonal(covariances, dim1=1, dim2=2).sum(-1) < 1.0)


@pytest.mark.parametrize("overrides,message", [
    (["method.invariance_weight=-1"], r"method.invariance_weight=-1 must be >= 0"),
    (["method.covariance_forgetting=1.5"], r"method.covariance_forgetting=1.5 must be a forgetting factor in \[0, 1\]"),
    (["method.mean_forgetting=-0.1"], r"method.mean_forgetting=-0.1 must be a forgetting factor"),
    (["method.mean_forgetting=abc"], r"method.mean_forgetting='abc' must be a forgetting factor"),
    (["method.initial_covariance=0"], r"method.initial_covariance=0 must be > 0"),
    (["method.epsilon=0"], r"method.epsilon=0 must be > 0"),
    (["method.epsilon=-1e-6"], r"method.epsilon=-1e-06 must be > 0"),
    (["method.normalize=maybe"], r"method.normalize='maybe' must be true or false"),
    (["augment.num_views=3"], r"augment.num_views=3 gives 3 views in all, but CorInfoMax takes exactly 2"),
    (["augment.small_views=2"], r"augment.num_views=2 gives 4 views in all, but CorInfoMax takes exactly 2"),
])
def test_bad_values_are_one_line_before_the_run(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(compose_config([*TINY, "method=corinfomax", *overrides], tmp_path))


# in make test (about 4 s on 2 cores): the acceptance asks for every new method's resume there
def test_stopped_mid_second_epoch_it_resumes_to_the_same_state_bit_for_bit(tmp_path):
    from tests.runtime.test_resume import SHORT, assert_resumes_bit_for_bit

    run = [*SHORT, "method=corinfomax", "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"]
    stopped, state = assert_resumes_bit_for_bit(run, tmp_path)
    assert not torch.equal(stopped["state_dict"]["covariances"], state["state_dict"]["covariances"])  # the estimates moved on after the resume


def test_a_quiet_training_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    from tests.test_step_syncs import _count_reads

    trainer, counter, model = _count_reads(tmp_path, monkeypatch, method="corinfomax")
    assert trainer.global_step == 13 and counter.quiet_steps == [1, 2, 3, 6, 7, 8, 11, 12]
    assert counter.reads == [], "host reads in quiet steps:\n" + "\n".join(map(str, counter.reads))
    assert model.hparams["invariance_weight"] == 250.0 and model.hparams["covariance_forgetting"] == 0.01


class EstimatesPerRank(L.Callback):
    """Writes, per rank, the sum of the covariance estimates each step's loss reads and of those it stores."""

    def __init__(self, path: str) -> None:
        self.path, self.read, self.stored = path, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        own = pl_module._own[0] if pl_module._own is not None else pl_module.covariances
        self.read.append(float(own.sum()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stored.append(float(pl_module.covariances.sum()))

    def on_train_end(self, trainer, pl_module) -> None:
        import json

        with open(f"{self.path}/rank{trainer.global_rank}.json", "w") as handle:
            json.dump({"read": self.read, "stored": self.stored}, handle)


@pytest.mark.slow  # ~40 s: two real DDP runs of two processes (the loss and the estimates are pinned on 2 ranks above)
@pytest.mark.parametrize("global_batch", [True, False])
def test_two_ddp_processes_keep_the_estimates_of_the_global_batch_or_each_their_own(global_batch, tmp_path):
    import json

    from tests.conftest import REPO, run_cli

    result = run_cli([*TINY, "method=corinfomax", f"method.global_batch={str(global_batch).lower()}", "trainer=ddp",
                      "trainer.devices=2", "trainer.max_steps=3", "callbacks.knn=null", f"hydra.run.dir={tmp_path}/run",
                      f"+callbacks.ranks._target_={__name__}.EstimatesPerRank", f"+callbacks.ranks.path={tmp_path}"],
                     cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for rank in ranks:  # each step reads what this rank stored after the step before (not rank 0's broadcast)
        assert rank["read"][0] == 32 * 2 and rank["read"][1:] == rank["stored"][:-1]
    assert (ranks[0]["stored"] == ranks[1]["stored"]) is global_batch  # the global batch's, or each rank's own
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["covariances"].dtype == torch.float64 and float(state["covariances"].sum()) == ranks[0]["stored"][-1]
