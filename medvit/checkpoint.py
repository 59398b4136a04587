"""The one file a training run's checkpoint folder holds (``Trainer.save`` writes it,
``load_state`` reads it), so a ``checkpoint_NNNNNN`` folder without it is a save, copy or upload
that was cut off. Torch-free: listing a sweep's checkpoints (``collect``, ``ensemble``, a
bucket's listing) needs no torch."""

CHECKPOINT_FILE = "state.pt"
