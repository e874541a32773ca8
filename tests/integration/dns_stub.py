#!/usr/bin/env python3
"""A DNS server for one name: dns_stub.py ADDRESS NAME IPV4 LOG

Answers UDP queries on ADDRESS:53: an A query for NAME with IPV4, any other query for NAME
with no record (NOERROR), anything else with NXDOMAIN. Appends "QTYPE NAME" to LOG for each
query, so that a test can tell a name was resolved through DNS (not /etc/hosts).
"""
import socket
import struct
import sys

TYPE_A = 1
CLASS_IN = 1


def question(packet):
    """(name, qtype, end offset) of the first question."""
    labels, i = [], 12
    while True:
        n = packet[i]
        if n == 0 or n & 0xC0:
            break
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, _ = struct.unpack("!HH", packet[i + 1:i + 5])
    return ".".join(labels).lower(), qtype, i + 5


def answer(packet, name, ipv4):
    qid, flags = struct.unpack("!HH", packet[:4])
    qname, qtype, end = question(packet)
    found = qname == name
    records = b""
    if found and qtype == TYPE_A:
        # a pointer to the question's name (offset 12), A, IN, TTL 5, 4 bytes
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 5, 4) + socket.inet_aton(ipv4)
    rcode = 0 if found else 3
    # response, the query's opcode and RD, RA; one question, 0 or 1 answer
    header = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x80 | rcode, 1,
                         1 if records else 0, 0, 0)
    return header + packet[12:end] + records, qname, qtype


def main():
    address, name, ipv4, log = sys.argv[1:5]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 53))
    with open(log, "a") as f:
        f.write("ready\n")
    while True:
        packet, peer = s.recvfrom(512)
        try:
            reply, qname, qtype = answer(packet, name.lower(), ipv4)
        except (IndexError, struct.error, UnicodeError):
            continue
        with open(log, "a") as f:
            f.write(f"{qtype} {qname}\n")
        s.sendto(reply, peer)


if __name__ == "__main__":
    main()
