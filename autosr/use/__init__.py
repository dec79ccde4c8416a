"""Using a trained model: self-describing model files, `autosr upscale` and `autosr export`."""
