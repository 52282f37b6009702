"""AudioSet itself: the hub fetch, mirror readers (Parquet, tar, segment CSVs), the class index and
sources, and the synthetic demo mirror. Knows nothing of the store."""
