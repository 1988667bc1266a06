"""`tf.train.Example`, defined here so that writing records needs no TensorFlow.

The message classes are built at import from a descriptor equivalent to TensorFlow's
``tensorflow/core/example/{feature,example}.proto`` (same package, names and field
numbers), in a private descriptor pool so they never clash with TensorFlow's own. The
wire format is the same: TensorFlow parses these bytes, and a test checks that both
serialize a row to identical bytes.

Why: the Beam workers that encode records then do not import TensorFlow (seconds of
start-up per worker process, and start-up noise in their logs).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="tfstream/example.proto", package="tensorflow", syntax="proto3")

    def message(name):
        return proto.message_type.add(name=name)

    def repeated(msg, type_, packed):
        field = msg.field.add(name="value", number=1, label=_F.LABEL_REPEATED, type=type_)
        if packed:
            field.options.packed = True

    repeated(message("BytesList"), _F.TYPE_BYTES, packed=False)
    repeated(message("FloatList"), _F.TYPE_FLOAT, packed=True)
    repeated(message("Int64List"), _F.TYPE_INT64, packed=True)

    feature = message("Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("BytesList", "FloatList", "Int64List"), start=1):
        field_name = {"BytesList": "bytes_list", "FloatList": "float_list", "Int64List": "int64_list"}[name]
        feature.field.add(name=field_name, number=number, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                          type_name=f".tensorflow.{name}", oneof_index=0)

    features = message("Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                    type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=_F.LABEL_REPEATED, type=_F.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")

    example = message("Example")
    example.field.add(name="features", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                      type_name=".tensorflow.Features")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())

Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
Feature = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Feature"))

__all__ = ["Example", "Feature"]
