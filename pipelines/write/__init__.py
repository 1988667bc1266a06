"""The write side: raw sources → a published tfstream dataset (shards + manifest).

`beam_pipeline.preprocess` runs it on any Apache Beam runner; `arrays.write_arrays`
writes NumPy arrays in one process. Both share everything that is not Beam: `sources`,
row routing (`rows`), shard counts (`shard_plan`, `source_size`), shard writing
(`sharding`), manifest assembly (`manifest_builder`), the run lifecycle (`run`),
`publish`, `drift` and `tfds_metadata`. Nothing here imports TensorFlow.
"""
