"""Training machinery shared by the recipes: Brain subclasses, checkpointing, logging."""
