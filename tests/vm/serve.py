"""The release server of `make test-vm`: serves a folder on 127.0.0.1 (the VM
reaches it as 10.0.2.2 through qemu's user networking), on a free port it
writes to PORT_FILE, and appends one line per request to LOG_FILE."""

import functools
import http.server
import os
import sys


def main() -> None:
    folder, port_file, log_file = sys.argv[1:4]
    log = open(log_file, "a", buffering=1, encoding="utf-8")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.write("%s %s\n" % (self.log_date_time_string(), format % args))

    handler = functools.partial(Handler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with open(port_file + ".part", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".part", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
