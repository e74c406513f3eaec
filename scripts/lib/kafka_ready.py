#!/usr/bin/env python3
"""Exit 0 when the Kafka broker at HOST:PORT answers a metadata request with itself as a live
broker and a known controller; exit 1 otherwise. Standard library only (no Kafka client
needed to start the test broker)."""
import socket
import struct
import sys


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def metadata_ready(host, port):
    client = b"osprey-ready"
    # Metadata v1, request header v1: api_key 3, version 1, correlation id, client id;
    # topics = null (-1) asks for every topic.
    body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", read_exact(sock, 4))[0]
        resp = read_exact(sock, size)
    pos = 4  # correlation id
    (brokers,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    for _ in range(brokers):
        pos += 4  # node id
        (hlen,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + hlen + 4  # host, port
        (rlen,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + max(rlen, 0)  # rack (nullable)
    (controller,) = struct.unpack_from(">i", resp, pos)
    return brokers >= 1 and controller >= 0


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    try:
        sys.exit(0 if metadata_ready(host or "127.0.0.1", int(port)) else 1)
    except (OSError, ConnectionError, struct.error):
        sys.exit(1)
