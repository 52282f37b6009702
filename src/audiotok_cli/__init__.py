"""audiotok: audio-token research on AudioSet (log-mel frames -> token vocabulary -> sequence models)."""

__version__ = "0.1.0"
