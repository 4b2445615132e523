"""The demo's own material, not training: synthetic scenes and clips, the demo model, scores on clips."""
