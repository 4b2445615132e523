"""Helpers the tests share: fake engines, generated clips, damaged media, fixture loaders, a live streamer."""
