#!/usr/bin/env python3
"""Writes testdata/logs/ from the literal records below (run from the repository root).

The records are hand-written in the S3 server access log format. Their quirks copy real lines in
tests/fixtures/real-world-lines.log (sources in tests/fixtures/SOURCES.md): the stray quote in a
User-Agent (dandi/s3-log-extraction), the unescaped quote in a Request-URI (cocoonlife/s3-log-parse
issue 1), BATCH.DELETE and S3.EXPIRE lines with `-` / `"-"` Request-URIs (elastic/beats,
elastic/integrations), a +0100 time offset (elastic/beats), 18- and 27-field records (logstash
patterns, AWS docs). The CloudFront requester with spaces follows the AWS log format docs.
Object names follow S3's simple key format (delivery time + unique string).
"""
import gzip

OWNER = "3b5a1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988"
ALICE = "arn:aws:iam::111122223333:user/alice"
BOB = "arn:aws:iam::111122223333:user/bob"
CAROL = "arn:aws:sts::111122223333:assumed-role/etl/carol"
DAVE = "arn:aws:iam::111122223333:user/dave"
MALLORY = "arn:aws:iam::111122223333:user/mallory"
OAI = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2EXAMPLEID"
UA_CLI = '"aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023 prompt/off command/s3.cp"'
UA_FF = '"Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"'
TLS = "ECDHE-RSA-AES128-GCM-SHA256"


def rec(bucket, time, ip, requester, reqid, op, key, uri, status, err, sent, size, total, turn,
        referer='"-"', ua=UA_CLI, version="-", hostid=None, sigv="SigV4", auth="AuthHeader",
        tail=("TLSv1.2", "-", "-", "us-east-1")):
    hostid = hostid or (reqid * 4 + "=")[:56]
    host = f"{bucket}.s3.us-east-1.amazonaws.com"
    head = (f"{OWNER} {bucket} [{time}] {ip} {requester} {reqid} {op} {key} {uri} {status} {err} "
            f"{sent} {size} {total} {turn} {referer} {ua} {version} {hostid} {sigv} {TLS} {auth} {host}")
    return " ".join([head, *tail])


A, U = "example-app-assets", "example-app-uploads"

# Delivered just after midnight: holds records of both 2024-03-14 and 2024-03-15.
object_a = [
    rec(A, "14/Mar/2024:23:41:02 +0000", "203.0.113.10", ALICE, "A1B2C3D4E5F60001", "REST.GET.OBJECT", "images/logo.png",
        f'"GET /{A}/images/logo.png HTTP/1.1"', 200, "-", 48213, 48213, 31, 12),
    rec(A, "14/Mar/2024:23:45:10 +0000", "2001:db8::1", "-", "A1B2C3D4E5F60002", "REST.GET.OBJECT", "images/logo.png",
        f'"GET /{A}/images/logo.png HTTP/1.1"', 200, "-", 48213, 48213, 40, 9,
        referer='"https://www.example.com/"', ua='""Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"',
        sigv="-", auth="-", tail=("TLSv1.3", "-", "-")),
    rec(A, "14/Mar/2024:23:58:59 +0000", "203.0.113.10", ALICE, "A1B2C3D4E5F60003", "REST.PUT.OBJECT", "images/logo.png",
        f'"PUT /{A}/images/logo.png HTTP/1.1"', 200, "-", "-", 51200, 88, 61),
    rec(A, "15/Mar/2024:00:00:01 +0000", "130.176.48.151", OAI, "A1B2C3D4E5F60004", "REST.GET.OBJECT", "images/banner.jpg",
        f'"GET /{A}/images/banner.jpg HTTP/1.1"', 200, "-", 90112, 90112, 25, 11, ua='"Amazon CloudFront"'),
    rec(A, "15/Mar/2024:00:03:33 +0000", "192.0.2.44", BOB, "A1B2C3D4E5F60005", "REST.GET.OBJECT", "reports/2024/q1.pdf",
        f'"GET /{A}/reports/2024/q1.pdf HTTP/1.1"', 200, "-", 2048000, 2048000, 310, 45, sigv="SigV2"),
    rec(A, "15/Mar/2024:00:05:00 +0000", "203.0.113.10", ALICE, "A1B2C3D4E5F60006", "REST.HEAD.OBJECT", "images/logo.png",
        f'"HEAD /{A}/images/logo.png HTTP/1.1"', 200, "-", "-", 51200, 6, 5),
    rec(A, "15/Mar/2024:00:07:45 +0000", "198.51.100.77", "-", "A1B2C3D4E5F60007", "REST.GET.OBJECT", "secret/%2522",
        f'"GET /{A}/secret/" HTTP/1.1"', 403, "AccessDenied", 243, "-", 8, "-", referer='"referer test"',
        ua='"curl/7.38.0"', sigv="-", auth="-"),
    rec(A, "15/Mar/2024:00:08:12 +0000", "198.51.100.77", "-", "A1B2C3D4E5F60008", "WEBSITE.GET.OBJECT", "index.html",
        '"GET /index.html HTTP/1.1"', 200, "-", 5120, 5120, 12, 4, ua=UA_FF, sigv="-", auth="-"),
]

# CRLF line endings; one User-Agent holds a byte that is not UTF-8.
object_b = [
    rec(U, "15/Mar/2024:01:02:03 +0000", "198.51.100.23", MALLORY, "B1B2C3D4E5F60001", "REST.DELETE.OBJECT", "reports/2024/q1.pdf",
        f'"DELETE /{U}/reports/2024/q1.pdf HTTP/1.1"', 204, "-", "-", "-", 22, 21),
    rec(U, "15/Mar/2024:01:02:05 +0000", "198.51.100.23", MALLORY, "B1B2C3D4E5F60002", "BATCH.DELETE.OBJECT",
        "old+report+2023.pdf", "-", 204, "-", "-", 57138, "-", "-", referer="-", ua="-"),
    rec(U, "15/Mar/2024:01:10:00 +0000", "203.0.113.10", ALICE, "B1B2C3D4E5F60003", "REST.PUT.OBJECT", "uploads/data.csv",
        f'"PUT /{U}/uploads/data.csv HTTP/1.1"', 200, "-", "-", 1048576, 420, 380),
    rec(U, "15/Mar/2024:03:15:00 +0100", "192.0.2.90", CAROL, "B1B2C3D4E5F60004", "REST.GET.OBJECT", "uploads/data.csv",
        f'"GET /{U}/uploads/data.csv HTTP/1.1"', 200, "-", 1048576, 1048576, 95, 30),
    rec(U, "15/Mar/2024:02:00:00 +0000", "-", "AmazonS3", "B1B2C3D4E5F60005", "S3.EXPIRE.OBJECT", "tmp/upload-1.part",
        '"-"', "-", "-", "-", 4096, "-", "-", ua='"-"', version="3HL4kqtJvjVBH40Nrjfkd", sigv="-", auth="-",
        tail=("-", "-", "-", "-")),
    f'{OWNER} {U} [15/Mar/2024:01:30:00 +0000] 192.0.2.200 - B1B2C3D4E5F60006 REST.GET.OBJECT uploads/data.csv '
    f'"GET /{U}/uploads/data.csv HTTP/1.1" 403 AccessDenied 243 - 5 - "-" "Wget/1.21" -',
    rec(U, "15/Mar/2024:01:45:30 +0000", "203.0.113.10", DAVE, "B1B2C3D4E5F60007", "REST.GET.OBJECT", "uploads/data.csv",
        f'"GET /{U}/uploads/data.csv HTTP/1.1"', 206, "-", 262144, 1048576, 60, 20,
        tail=("TLSv1.2", "-", "-", "us-west-2", "-", "newfield=1")),
    rec(U, "15/Mar/2024:01:50:00 +0000", "192.0.2.91", CAROL, "B1B2C3D4E5F60008", "REST.GET.OBJECT", "uploads/data.csv",
        f'"GET /{U}/uploads/data.csv HTTP/1.1"', 200, "-", 1048576, 1048576, 90, 28, ua='"etl-loader/1.0 \udcff"'),
    rec(U, "15/Mar/2024:02:05:00 +0000", "203.0.113.10", ALICE, "B1B2C3D4E5F60009", "REST.GET.BUCKET", "-",
        f'"GET /{U}?list-type=2&prefix=uploads%2F HTTP/1.1"', 200, "-", 1534, "-", 44, 43),
]

# gzip-compressed; holds the one truncated line.
object_c = [
    rec(A, "15/Mar/2024:12:10:00 +0000", "203.0.113.10", DAVE, "C1B2C3D4E5F60001", "REST.GET.OBJECT", "images/logo.png",
        f'"GET /{A}/images/logo.png HTTP/1.1"', 200, "-", 51200, 51200, 30, 10),
    rec(A, "15/Mar/2024:12:11:11 +0000", "198.51.100.77", "-", "C1B2C3D4E5F60002", "REST.GET.OBJECT", "images/banner.jpg",
        f'"GET /{A}/images/banner.jpg HTTP/1.1"', 200, "-", 90112, 90112, 27, 9, ua=UA_FF, sigv="-", auth="-"),
    rec(A, "15/Mar/2024:12:20:00 +0000", "192.0.2.44", BOB, "C1B2C3D4E5F60003", "REST.PUT.OBJECT", "images/new.png",
        f'"PUT /{A}/images/new.png HTTP/1.1"', 200, "-", "-", 30000, 70, 50, sigv="SigV2"),
    f'{OWNER} {A} [15/Mar/2024:12:30:00 +0000] 192.0.2.44 - C1B2C3D4E5F60004 REST.GET.OBJECT images/logo.png '
    f'"GET /{A}/images/logo.png HTTP/1.1" 200 -',
    rec(A, "15/Mar/2024:12:45:00 +0000", "203.0.113.10", ALICE, "C1B2C3D4E5F60005", "REST.GET.OBJECT", "reports/2024/q2.pdf",
        f'"GET /{A}/reports/2024/q2.pdf HTTP/1.1"', 404, "NoSuchKey", 312, "-", 15, "-"),
    rec(A, "15/Mar/2024:12:50:00 +0000", "192.0.2.90", CAROL, "C1B2C3D4E5F60006", "REST.GET.OBJECT", "images/logo.png",
        f'"GET /{A}/images/logo.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f1e HTTP/1.1"', 200, "-", 51200,
        51200, 28, 10, auth="QueryString"),
    rec(A, "15/Mar/2024:12:55:00 +0000", "203.0.113.10", ALICE, "C1B2C3D4E5F60007", "REST.COPY.OBJECT", "images/logo-v2.png",
        f'"PUT /{A}/images/logo-v2.png HTTP/1.1"', 200, "-", 234, 51200, 80, 60),
]


def write(name, lines, eol="\n", compress=False):
    data = eol.join(lines).encode("utf-8", "surrogateescape") + eol.encode()
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(f"testdata/logs/{name}", "wb") as f:
        f.write(data)


write("2024-03-15-00-10-11-4C3B2A1908F7E6D5", object_a)
write("2024-03-15-02-20-45-9E8D7C6B5A493827", object_b, eol="\r\n")
write("2024-03-15-13-00-02-0A1B2C3D4E5F6071.gz", object_c, compress=True)
