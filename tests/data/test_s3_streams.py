"""Streams in S3 (``out=s3://…``, ``data.stream=s3://…``) against a real S3 endpoint: moto's server on 127.0.0.1,
with authentication on (an IAM user whose keys are the only ones it accepts). Prepare writes the chunks there,
training streams them back (shuffled, a share per DDP rank, resumed mid-epoch to the same weights), and a missing
bucket, rejected or absent credentials and an endpoint that does not answer each stop the run before it starts
with one line that names the fix, and the fix works."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from frossl_lit.data import datamodule
from frossl_lit.data.streams import s3 as s3_streams
from frossl_lit.data.streams.reader import StreamingDataModule
from frossl_lit.data.streams.writer import write_stream
from frossl_lit.runtime.errors import UserError
from tests.conftest import TINY, compose_config, compose_raw, free_port, run_cli
from tests.data.test_stream import (
    _augment,
    _index_stream,
    _indices,
    assert_disjoint_equal_shuffled_shares,
    two_rank_epoch,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("moto") is None,
                                reason="moto[server] is not installed (pip install 'moto[server]', in the dev extra)")
BUCKET = "streams"
NO_EVAL = ["callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"]
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")


class Endpoint:
    def __init__(self, url: str, key: str, secret: str) -> None:
        self.url, self.key, self.secret = url, key, secret


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free local port, a bucket, and an IAM user's keys; requests signed with any other keys
    are rejected from then on. Stopped (and moto's authentication switched back off) after the module."""
    import boto3
    from moto import settings
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    auth_before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        url = f"http://127.0.0.1:{port}"
        admin = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="trainer")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(policy))
        keys = iam.create_access_key(UserName="trainer")["AccessKey"]
        boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request is authenticated
        yield Endpoint(url, keys["AccessKeyId"], keys["SecretAccessKey"])
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = auth_before
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> dict:
    """The standard AWS variables pointing at the server with the user's keys (and no ~/.aws files of this machine);
    returned for subprocesses too."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ENDPOINT_URL": s3_server.url,
        "AWS_ACCESS_KEY_ID": s3_server.key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role lookup on a machine without one
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _prepare_digits(out: str, tmp_path) -> dict:
    """``python -m frossl_lit.prepare out=…`` of the embedded digits (train, hold-out), in-process."""
    from frossl_lit.prepare import prepare

    return prepare(compose_raw([f"out={out}", "progress=false", f"paths.data_dir={tmp_path / 'data'}"], "prepare"))


def _one_line_error(stream: str, *, tmp_path) -> str:
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        StreamingDataModule(augment=_augment(), stream=stream, batch_size=16, num_workers=0, cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "\n" not in message and time.monotonic() - started < 20, message
    return message


# -- fast: a stream written to S3 trains one step from it --------------------------------------------------------
def test_prepare_writes_to_s3_and_training_streams_from_it(s3_env, tmp_path):
    from frossl_lit.train import train

    url = f"s3://{BUCKET}/digits-fast"
    meta = _prepare_digits(url, tmp_path)
    assert meta["images"] == "array" and meta["splits"]["train"] > 1000
    assert json.loads(s3_streams.read_bytes(f"{url}/frossl_meta.json")) == meta
    cfg = compose_config([*TINY, "data.format=litdata", f"data.stream={url}", f"+data.cache_dir={tmp_path / 'cache'}",
                          "trainer.max_steps=1", "data.num_workers=0", *NO_EVAL], tmp_path / "run")
    summary = train(cfg)
    assert summary["global_step"] == 1
    assert any((tmp_path / "cache").rglob("*.bin")), "no chunk came from the endpoint"
    with pytest.raises(UserError, match=r"already holds objects; delete them \(aws s3 rm --recursive"):
        _prepare_digits(url, tmp_path)  # never over an earlier stream


def test_a_prefix_without_a_stream_says_how_to_write_one(s3_env, tmp_path):
    message = _one_line_error(f"s3://{BUCKET}/nothing-here", tmp_path=tmp_path)
    assert "holds no stream" in message and "out=s3://streams/nothing-here" in message


# -- fast: what can be wrong is one line that names the fix, and the fix works -------------------------------------
def test_a_missing_bucket_is_one_line_and_creating_it_works(s3_env, s3_server, tmp_path):
    import boto3

    message = _one_line_error("s3://not-made-yet/digits", tmp_path=tmp_path)
    assert "bucket 'not-made-yet' does not exist at " + s3_server.url in message
    assert "aws s3 mb s3://not-made-yet" in message
    boto3.client("s3").create_bucket(Bucket="not-made-yet")  # the advice
    message = _one_line_error("s3://not-made-yet/digits", tmp_path=tmp_path)
    assert "holds no stream" in message  # the bucket is found now; what is left is writing the stream


def test_wrong_or_missing_credentials_are_one_line_and_the_named_variables_fix_them(s3_env, s3_server, monkeypatch, tmp_path):
    url = f"s3://{BUCKET}/digits-creds"
    _prepare_digits(url, tmp_path)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    message = _one_line_error(url, tmp_path=tmp_path)
    assert f"{s3_server.url} rejected the credentials (SignatureDoesNotMatch)" in message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    assert "rejected the credentials (InvalidAccessKeyId)" in _one_line_error(url, tmp_path=tmp_path)

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = _one_line_error(url, tmp_path=tmp_path)
    assert message.startswith(f"{url}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")

    # the advice: the variables it names (or a profile in the credentials file it names)
    (tmp_path / "credentials").write_text(f"[streams]\naws_access_key_id = {s3_server.key}\naws_secret_access_key = {s3_server.secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "streams")
    module = StreamingDataModule(augment=_augment(), stream=url, batch_size=16, num_workers=0, cache_dir=str(tmp_path / "cache"))
    assert module.num_classes == 10
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    batch, labels = next(iter(StreamingDataModule(augment=_augment(), stream=url, batch_size=16, num_workers=0,
                                                  cache_dir=str(tmp_path / "cache")).train_dataloader()))
    assert batch.shape[0] == 16 == labels.shape[0]


def test_an_endpoint_that_does_not_answer_is_one_line_and_setting_the_endpoint_fixes_it(s3_env, s3_server, monkeypatch, tmp_path):
    url = f"s3://{BUCKET}/digits-endpoint"
    nobody = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", nobody)
    message = _one_line_error(url, tmp_path=tmp_path)
    assert message.startswith(f"{url}: cannot reach the S3 endpoint {nobody} (EndpointConnectionError): set AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL")
    with pytest.raises(UserError, match="cannot reach the S3 endpoint"):  # prepare checks before converting
        _prepare_digits(url, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.url)  # the advice: the S3-only variable wins over the general one
    assert _prepare_digits(url, tmp_path)["splits"]["train"] > 1000
    assert StreamingDataModule(augment=_augment(), stream=url, batch_size=16, num_workers=0).num_classes == 10


# -- slow: the command line, DDP and resume, all from the endpoint ------------------------------------------------
@pytest.mark.slow  # ~50 s: three commands' imports
def test_the_commands_write_to_and_train_from_s3_and_a_bad_bucket_exits_2_with_one_line(s3_env, tmp_path):
    url = f"s3://{BUCKET}/digits-cli"
    done = run_cli([f"out={url}", "progress=false"], tmp_path, env=s3_env, module="frossl_lit.prepare")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {url}" in done.stdout
    run = tmp_path / "run"
    trained = run_cli([*TINY, "data.format=litdata", f"data.stream={url}", f"+data.cache_dir={tmp_path / 'cache'}",
                       "trainer.max_steps=3", "data.num_workers=2", f"hydra.run.dir={run}"], tmp_path, env=s3_env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 3 and 0.0 <= summary["knn_top1"] <= 1.0
    bad = run_cli([*TINY, "data.format=litdata", "data.stream=s3://no-such-bucket/x", f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path, env=s3_env)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert lines[-1].startswith("frossl_lit: error: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"), lines


def _rank_epoch(rank: int, port: int, url: str, cache: str, queue) -> None:
    """One epoch of rank ``rank`` of 2 (gloo): the indices it read, or the traceback."""
    import traceback

    try:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        module = StreamingDataModule(augment=_augment(), stream=url, batch_size=16, num_workers=0, seed=3, cache_dir=cache)

        class FakeTrainer:  # what the module asks of the trainer: the rank and the world size
            global_rank, world_size = rank, 2

        module.trainer = FakeTrainer()
        loader = module.train_dataloader()
        queue.put((rank, [i for batch in loader for i in _indices(batch)], len(loader)))
        dist.destroy_process_group()
    except Exception:  # report instead of hanging the parent
        queue.put((rank, traceback.format_exc(), 0))


@pytest.mark.slow  # ~3 s
def test_each_ddp_rank_streams_a_disjoint_equal_share_from_s3(s3_env, tmp_path):
    url = f"s3://{BUCKET}/index-ddp"
    _index_stream(url, 200)
    results = two_rank_epoch(_rank_epoch, lambda rank: (url, str(tmp_path / f"cache{rank}")))
    assert_disjoint_equal_shuffled_shares(results)


@pytest.mark.slow  # ~20 s: two gloo processes of Lightning's own DDP launcher
def test_ddp_training_on_two_processes_streams_from_s3(s3_env, tmp_path):
    url = f"s3://{BUCKET}/digits-ddp"
    _prepare_digits(url, tmp_path)
    run = tmp_path / "run"
    trained = run_cli([*TINY, "trainer=ddp", "trainer.devices=2", "trainer.max_steps=4", "data.batch_size=32",
                       "data.format=litdata", f"data.stream={url}", f"+data.cache_dir={tmp_path / 'cache'}", "data.num_workers=1",
                       *NO_EVAL, f"hydra.run.dir={run}"], tmp_path, env=s3_env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["global_step"] == 4


@pytest.mark.slow  # ~30 s (3 runs of 22 steps, a checkpoint per step)
def test_a_run_stopped_mid_epoch_on_an_s3_stream_resumes_bit_for_bit_on_a_fresh_cache(s3_env, tmp_path):
    """Killed after step 16 of 22 (mid-epoch 2), resumed in another run directory whose chunk cache is empty (another
    node, a job's own scratch disk): it streams the rest of the epoch from S3 and ends in the whole run's state."""
    from tests.runtime.test_resume import SHORT, assert_resumes_bit_for_bit

    url = f"s3://{BUCKET}/digits-resume"
    write_stream(datamodule(compose_config(TINY, tmp_path / "convert").data), url, progress=False)
    run = [*SHORT, "data.format=litdata", f"data.stream={url}", "+data.cache_dir=${paths.output_dir}/chunks", *NO_EVAL]
    assert_resumes_bit_for_bit(run, tmp_path)
    for name in ("whole", "first", "resumed"):  # each run read its chunks from the endpoint
        assert any((tmp_path / name / "chunks").rglob("*.bin")), name
