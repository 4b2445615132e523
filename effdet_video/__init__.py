"""effdet-video: streaming EfficientDet object detection for video files, live streams and folders."""

__version__ = "0.1.0"
