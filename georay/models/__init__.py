"""Model loading: CLIP encoders, segmenters, vision-language models, tiny test models. No Ray here."""
