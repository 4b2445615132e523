"""Fine-tuning: the data set, anchor targets, losses, the training loop, checkpoints, COCO evaluation."""
