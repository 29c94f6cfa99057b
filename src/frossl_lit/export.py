"""Export a checkpoint's backbone as a plain state dict: ``python -m frossl_lit.export CKPT OUT.pt``.

For ResNets the keys are torchvision's (``torchvision.models.resnet18().load_state_dict(sd, strict=False)``
loads all but ``fc``); a CIFAR-stem backbone has a 3×3 ``conv1``: rebuild it with
``frossl_lit.models.resnet("resnet18", cifar_stem=True)`` or replace ``conv1`` the same way before loading.
A JSON file beside OUT records the backbone's config.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from frossl_lit.evaluation.offline import backbone_state_dict, find_run_config
from frossl_lit.runtime.checkpointing import read_checkpoint
from frossl_lit.runtime.errors import UserError, exits_on_user_error
from frossl_lit.runtime.fileio import atomic_write


def export(ckpt: str, out: str) -> Path:
    """Write the backbone of checkpoint ``ckpt`` to ``out`` and its config beside it (``.json``), each written whole;
    an unreadable checkpoint or an unwritable ``out`` is one :class:`UserError` line."""
    path = Path(ckpt)
    state = backbone_state_dict(read_checkpoint(ckpt, "CKPT"))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    elsewhere = "python -m frossl_lit.export CKPT <writable dir>/backbone.pt"
    destination = atomic_write(out, buffer.getvalue(), elsewhere)
    try:
        backbone_cfg = OmegaConf.to_container(find_run_config(path).backbone, resolve=False)
    except UserError:
        backbone_cfg = None
    atomic_write(destination.with_suffix(".json"), json.dumps({"checkpoint": str(path), "backbone": backbone_cfg}, indent=2) + "\n", elsewhere)
    return destination


@exits_on_user_error()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    print(f"wrote {export(args.ckpt, args.out)}")


if __name__ == "__main__":
    main()
