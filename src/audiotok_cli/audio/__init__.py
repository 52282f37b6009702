"""Audio on disk and the frames made from it: where expanded clips live, decoding, log-mel and
pretrained encoder front ends, frame transforms."""
