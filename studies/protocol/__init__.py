"""The MedViT paper's protocol on one GPU (issue 20); results: reports/protocol/README.md."""
