"""Detection math kept apart from the network (like torchvision's detection `_utils`): anchors, box
decoding and IoU, AutoML's letterbox, and static-shape NMS + post-processing that the engine captures in
one graph. Pure torch on the device side; parity with Google AutoML is tested from its fixtures."""
