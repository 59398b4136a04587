"""The studies behind reports/ (the training recipe, the MedViT paper's protocol), run as
modules from the repository root (``python -m studies.recipe.run_arm``). Their data and
write-ups live in reports/; this package holds only code. Not part of the medsweep wheel: it
imports the product, the product never imports it."""
