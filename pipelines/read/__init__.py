"""The read side: a tfstream dataset → tf.data batches of ``(features, label)``.

`reader.read` composes the pure ``Dataset -> Dataset`` stages of `stages` and
`bucketing`, with one typed options object (`config.ReadOptions`); `memory` plans the
input pipeline's memory from the manifest before it runs. Nothing here imports Beam.
"""
