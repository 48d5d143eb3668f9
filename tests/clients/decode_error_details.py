"""A generic gRPC client: knows no servicelevel code, learns every type through server
reflection (v1alpha, as grpcio-reflection speaks it), calls a method that fails, and
prints the status details decoded into JSON, one object per detail.

Usage: decode_error_details.py HOST:PORT TOKEN SERVICE METHOD REQUEST_JSON
"""

import json
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    address, token, service, method, request = sys.argv[1:6]
    channel = grpc.insecure_channel(address)
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    rpc = pool.FindServiceByName(service).FindMethodByName(method)
    request_type = message_factory.GetMessageClass(rpc.input_type)
    response_type = message_factory.GetMessageClass(rpc.output_type)
    call = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        call(
            json_format.Parse(request, request_type()),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
    except grpc.RpcError as error:
        trailers = dict(error.trailing_metadata() or ())
        status_type = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.rpc.Status")
        )
        status = status_type.FromString(trailers["grpc-status-details-bin"])
        details = []
        for detail in status.details:
            name = detail.type_url.rsplit("/", 1)[-1]
            detail_type = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            details.append(
                {"type": name, "value": json_format.MessageToDict(detail_type.FromString(detail.value))}
            )
        print(json.dumps({"code": error.code().name, "details": details}))
        return 0
    print("the call did not fail", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
