"""PyTorch weight files (safetensors, torch.save state_dicts) read into numpy, without torch."""
