"""What a run needs around the training loop: its directory and lock (:mod:`.rundir`), resuming and the config it
records (:mod:`.resume`), atomic checkpoint and file writes (:mod:`.checkpointing`, :mod:`.fileio`), loggers
(:mod:`.loggers`), DDP collectives and Hydra-launched DDP (:mod:`.distributed`, :mod:`.hydra_ddp`), and the errors a
user can fix (:mod:`.errors`)."""
