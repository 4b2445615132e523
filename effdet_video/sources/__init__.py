"""Where frames come from: video files and images (CPU or NVDEC decoding), live streams, damaged inputs."""
