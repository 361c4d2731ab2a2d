"""Image I/O, manifests, schemas, prompts and the synthetic world. No Ray here."""
