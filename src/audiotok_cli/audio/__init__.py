"""Audio on disk: where expanded clips live, decoding, and the log-mel front end."""
