"""Per-example logic shared by the Beam write side and the tf.data read side.

Plain functions and small classes, no I/O: the schema and its parse spec, validation of
raw rows, the Example codec, the split hash, and the full-pass analyzers.
"""

from tfstream.transforms.analyzers import DatasetStats, Moments, majority_baseline
from tfstream.transforms.codecs import decode_example, encode_example, parse_batch
from tfstream.transforms.schema import Feature, Label, Schema, format_parse_spec, length_key
from tfstream.transforms.split import Splitter
from tfstream.transforms.validation import FeatureRule, LabelRule, RowError, RowRules, convert_row

__all__ = [
    "DatasetStats",
    "Feature",
    "FeatureRule",
    "Label",
    "LabelRule",
    "Moments",
    "RowError",
    "RowRules",
    "Schema",
    "Splitter",
    "convert_row",
    "decode_example",
    "encode_example",
    "format_parse_spec",
    "length_key",
    "majority_baseline",
    "parse_batch",
]
