"""What several CLI test modules share: the argv of a tiny, quick UNet-D training run."""
from __future__ import annotations

# tiny UNet-D at 32 px on CPU-friendly settings; add --data, --out and --epochs
TRAIN = ["train", "--model", "unet-d", "--preset", "tiny", "--img-size", "32", "--batch-size", "4",
         "--num-workers", "0", "--no-progress", "--seed", "1"]
