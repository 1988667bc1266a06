"""The two sides of a tfstream dataset, and what they share.

* `pipelines.write`: raw sources → a dataset directory (Apache Beam, or `write_arrays`
  in one process). Imports Beam, never TensorFlow.
* `pipelines.read`: a dataset directory → tf.data batches for Keras. Imports
  TensorFlow, never Beam.
* `pipelines.inspect`: a dataset's manifest as tables and plots.
* Shared by all three (this package's own modules): the job config (`config`), the
  manifest, the contract between the sides (`manifest`), shard names and framing
  (`shards`), and file access (`fs`).

The public API is `tfstream` itself (``import tfstream as tfs``).
"""
