"""The checked-in protobuf code of the Caffe importer matches caffe.proto."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools (the pinned protoc, dev extra) is not installed")
def test_generated_code_is_fresh():
    from dfx_caffe import generate_proto

    fresh = generate_proto.generate()
    assert fresh == generate_proto.TARGET.read_bytes(), (
        "plugins/dfx_caffe/_proto/caffe_pb2.py is stale: run python plugins/dfx_caffe/generate_proto.py")


def test_schema_numbers_that_binary_files_depend_on():
    from dfx_caffe._proto import caffe_pb2 as pb

    layer = pb.LayerParameter.DESCRIPTOR.fields_by_name
    assert layer["quantization_param"].number == 149
    assert layer["blobs"].number == 7 and layer["name"].number == 1
    assert layer["prior_box_param"].number == 203 and layer["norm_param"].number == 206
    assert pb.NetParameter.DESCRIPTOR.fields_by_name["layer"].number == 100
    assert pb.NetParameter.DESCRIPTOR.fields_by_name["layers"].number == 2
    v1 = pb.V1LayerParameter.DESCRIPTOR.fields_by_name
    assert (v1["name"].number, v1["type"].number, v1["blobs"].number) == (4, 5, 6)
    qp = pb.QuantizationParameter.DESCRIPTOR.fields_by_name
    assert [qp[n].number for n in ("bw_layer_in", "bw_layer_out", "bw_params", "fl_layer_in",
                                   "fl_layer_out", "fl_params")] == [3, 4, 5, 6, 7, 8]
    assert pb.QuantizationParameter.DESCRIPTOR.fields_by_name["bw_params"].default_value == 32
    assert pb.QuantizationParameter.DESCRIPTOR.fields_by_name["fl_params"].default_value == 16
