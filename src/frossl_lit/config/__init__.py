"""The configuration around Hydra: the command line checked before Hydra composes (:mod:`.overrides`), the checks
that span several config groups (:mod:`.checks`) and the OmegaConf resolvers (:mod:`.resolvers`)."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the package's Hydra configs (linked as conf/)
