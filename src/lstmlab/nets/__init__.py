"""Plain ``nn.Module`` networks. Nothing here imports Lightning or touches files."""
