"""Generating responses: backends and resumable response stores."""
