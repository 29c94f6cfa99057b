"""Export a checkpoint's backbone as a plain state dict: ``python -m frossl_lit.export CKPT OUT.pt``.

For ResNets the keys are torchvision's (``torchvision.models.resnet18().load_state_dict(sd, strict=False)``
loads all but ``fc``); a CIFAR-stem backbone has a 3×3 ``conv1``: rebuild it with
``frossl_lit.models.resnet("resnet18", cifar_stem=True)`` or replace ``conv1`` the same way before loading.
A JSON file beside OUT records the backbone's config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from frossl_lit.errors import UserError
from frossl_lit.evaluation.offline import backbone_state_dict, find_run_config


def export(ckpt: str, out: str) -> Path:
    path = Path(ckpt)
    if not path.is_file():
        raise UserError(f"{ckpt} does not exist")
    state = backbone_state_dict(torch.load(path, map_location="cpu", weights_only=False))
    destination = Path(out)
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, destination)
    try:
        backbone_cfg = OmegaConf.to_container(find_run_config(path).backbone, resolve=False)
    except UserError:
        backbone_cfg = None
    destination.with_suffix(".json").write_text(json.dumps({"checkpoint": str(path), "backbone": backbone_cfg}, indent=2) + "\n")
    return destination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {export(args.ckpt, args.out)}")
    except UserError as error:
        print(f"frossl_lit: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
