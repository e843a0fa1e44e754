"""What a go-micro server does, on a stream's connection, with what is not that stream's
(gmicro stream-conn-probe: a server of its own, written to raw over HTTP/1.1), as README's
Streams section states it and test/framework/stream_conn.c contrasts with cmicro's server:
an EOS for an unknown id is dropped; the frames of another stream id and a unary call are
served, but their replies carry the first stream's Micro-Stream, so no caller can tell them from
the first stream's messages.
    stream_conn_probe.py GMICRO [GMICRO...]"""

import re
import subprocess
import sys


def probe(binary):
    out = subprocess.run([binary, "stream-conn-probe"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    cases = {}
    for line in out.splitlines():
        m = re.match(r"CASE ([a-z-]+): \[(.*)\]$", line)
        if m:
            cases[m.group(1)] = re.findall(r"stream=(\S*) id=(\S*) body=(\S*)", m.group(2))
    return cases


def main():
    failed = 0
    for binary in sys.argv[1:]:
        c = probe(binary)
        version = subprocess.run([binary, "version"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        print("go-micro %s: %r" % (version, c))
        checks = [
            ("the opening is not answered", c.get("open") == []),
            ("an EOS for an unknown id is dropped: only stream 1's answer follows",
             len(c.get("eos-unknown", [])) == 1 and c["eos-unknown"][0][0] == "1"
             and '"seq":4' in c["eos-unknown"][0][2]),
            ("stream 2 is served, its reply under stream 1's Micro-Stream",
             len(c.get("other-stream", [])) == 1 and c["other-stream"][0][0] == "1"
             and '"seq":8' in c["other-stream"][0][2]),
            ("the unary call is served, its reply under stream 1's Micro-Stream",
             len(c.get("unary", [])) == 1 and c["unary"][0][0] == "1"
             and "unary:u" in c["unary"][0][2]),
        ]
        for what, ok in checks:
            print("%s: %s" % ("ok" if ok else "FAIL", what))
            failed += not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
