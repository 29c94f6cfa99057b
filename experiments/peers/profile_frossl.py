"""Where one frossl_lit training step's time goes in the peer benchmark's setting: the real training loop built
from the same overrides as ``python -m frossl_lit.train`` (``frossl_lit.train.build``), timed by
``experiments.bench_step``'s clock (data + loop, augmentation, forward, loss, backward, optimizer step).

    python -m experiments.peers.profile_frossl --out FILE.json -- <the run's overrides>
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from experiments.bench_step import StepClock, StepEnd
from experiments.peers import common as c


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--out", required=True)
    cli.add_argument("--warmup", type=int, default=1)
    cli.add_argument("overrides", nargs="*")
    args = cli.parse_args(argv)
    from frossl_lit.config.compose import compose_train_config
    from frossl_lit.train import build

    c.threads()
    cfg = compose_train_config(args.overrides, Path(tempfile.mkdtemp()))
    datamodule, model, _, trainer = build(cfg)
    clock = StepClock(model, datamodule, args.warmup)
    clock.wrap_callbacks(trainer)
    trainer.callbacks.insert(0, clock)
    trainer.callbacks.append(StepEnd(clock))
    trainer.fit(model, datamodule=datamodule)
    profile = {name: round(1000 * statistics.median(values), 2) for name, values in clock.times.items()}
    Path(args.out).write_text(json.dumps({"profile_ms": profile}, indent=1))


if __name__ == "__main__":
    main()
