# tests/nginx/slow_upstream.py PORT - the upstream of tests/test_nginx.sh:
# answers every GET with 200 "ok" after the number of seconds in the query
# ("/slow?3"; none: at once), one thread per request.
import http.server
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        _, _, q = self.path.partition("?")
        if q:
            time.sleep(float(q))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
