"""How gradients become steps: flat parameter buffers and Adam over them, the update-path choice, compile and
CUDA-graph helpers, the device."""
