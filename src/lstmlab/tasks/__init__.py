"""LightningModules by task: each owns its loss, metrics and optimizers, around a plain ``net``."""
