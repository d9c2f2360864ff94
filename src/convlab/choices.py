"""Names of settings that the command-line parser and the library share, importable without torch.

The parser reads them for its ``choices`` and the library checks values against them, so one tuple
decides what both accept; keeping torch out of this module keeps ``convlab --help`` fast.
"""

# The precision of a forward pass: float32 ("off"), or autocast to bfloat16 or float16.
PRECISIONS = ("off", "bf16", "fp16")
# Training takes the first two: float16 training needs a gradient scaler, which convlab's loop does not run.
TRAINING_PRECISIONS = ("off", "bf16")
