"""Where finished frames go: encoded video (and its encoder process), images, detection files, live outputs."""
