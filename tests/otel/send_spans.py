"""Send spans through the official OpenTelemetry Python SDK to an OTLP/HTTP endpoint (the
Collector), and print what was sent, per service, route and minute of end time, as JSON.

    python send_spans.py http://127.0.0.1:4318 START_MS SPANS
"""
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint, start_ms, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
services = ["api", "checkout"]
routes = ["/cart", "/pay", "/search"]
providers = {}
for service in services:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"), max_export_batch_size=100))
    providers[service] = provider

windows = {}  # "service route minute" -> [requests, errors]
slo = {s: {"events": 0, "bad": 0, "slow": 0} for s in services}
for i in range(count):
    service = services[i % len(services)]
    route = routes[(i // len(services)) % len(routes)]
    tracer = providers[service].get_tracer("osprey-test", "1.0")
    start = (start_ms + i * 150) * 1_000_000 + (i * 7919) % 1_000_000  # sub-millisecond starts too
    duration_us = 20_000 + (i * 37_003) % 400_000
    status = 503 if i % 17 == 0 else (404 if i % 11 == 0 else 200)
    span = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=start,
                             attributes={"http.route": route, "http.response.status_code": status})
    failed = status >= 500 or i % 23 == 0
    if failed:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    end = start + duration_us * 1_000
    span.end(end_time=end)
    if i % 5 == 0:  # a client span beside it: not a request of the service
        child = tracer.start_span("SELECT", kind=SpanKind.CLIENT, start_time=start, attributes={"db.system": "postgresql"})
        child.end(end_time=start + 1_000_000)
    end_ms = end // 1_000_000
    minute = end_ms - end_ms % 60_000
    key = f"{service} {route} {minute}"
    w = windows.setdefault(key, [0, 0])
    w[0] += 1
    w[1] += 1 if failed else 0
    slo[service]["events"] += 1
    slo[service]["bad"] += 1 if failed else 0
    slo[service]["slow"] += 1 if duration_us / 1000 > 300 else 0

for provider in providers.values():
    provider.force_flush()
    provider.shutdown()
print(json.dumps({"windows": windows, "slo": slo}))
