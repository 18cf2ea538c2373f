"""Training: the two training loops, the losses, immunizing perturbations, run folders and exact resume."""
