#!/usr/bin/env python3
"""Smoke-test a running nudge with an independent gRPC client (Python grpcio),
the way grpcurl does it: discover everything through server reflection, no
.proto file. Usage: pip install grpcio grpcio-reflection grpcio-health-checking
&& python3 scripts/grpc_smoke.py [127.0.0.1:50051]"""
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
channel = grpc.insecure_channel(addr)
db = ProtoReflectionDescriptorDatabase(channel)
print("services:", sorted(db.get_services()))
pool = descriptor_pool.DescriptorPool(db)
svc = pool.FindServiceByName("nudge.v1.Offers")
print("methods:", [m.name for m in svc.methods])

health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="nudge.v1.Offers"))
print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))

def call(method, body):
    m = svc.methods_by_name[method]
    req_cls = message_factory.GetMessageClass(m.input_type)
    resp_cls = message_factory.GetMessageClass(m.output_type)
    rpc = channel.unary_unary(f"/nudge.v1.Offers/{method}",
                              request_serializer=lambda r: r.SerializeToString(),
                              response_deserializer=resp_cls.FromString)
    return json_format.MessageToJson(rpc(json_format.ParseDict(body, req_cls())), indent=None)

print("Decide:", call("Decide", {
    "sessionId": "smoke-1",
    "context": {"device": "DEVICE_DESKTOP", "trafficSource": "TRAFFIC_SOURCE_SEARCH"},
    "events": [
        {"pageView": {"pageKind": "PAGE_KIND_PRODUCT", "productId": "jacket-a",
                      "priceCents": 15000, "dwellMs": 90000, "scrollDepth": 0.8}},
        {"cartAdd": {"productId": "jacket-a", "unitPriceCents": 15000, "quantity": 1}},
        {"interaction": {"signal": "SIGNAL_COUPON_FIELD_FOCUS"}},
    ]}))
try:
    call("Decide", {"sessionId": "smoke-1", "events": [
        {"pageView": {"pageKind": "PAGE_KIND_PRODUCT", "productId": "x", "priceCents": -5}}]})
except grpc.RpcError as e:
    print("bad input:", e.code().name, e.details())
