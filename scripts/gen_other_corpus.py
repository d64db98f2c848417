#!/usr/bin/env python3
"""A second generator of S3 server access logs, written apart from the project's own
(testkit/src/corpus.rs) so that a benchmark is not tuned to one generator's choices: longer lines
(about 660 bytes), requesters that are mostly assumed-role sessions (hundreds of distinct ARNs),
200,000 keys, 55,000 client addresses, SDK and browser User-Agents with version numbers, a Referer
on a fifth of the lines, and a share of truncated lines (rejects). Object sizes are log-normal, in
names as S3 delivers them (`YYYY-mm-DD-HH-MM-SS-<16 hex>`), one folder.

    python3 scripts/gen_other_corpus.py OUT_DIR [--bytes 1073741824] [--objects 2048] [--seed 7]
    scripts/bench.sh --logs OUT_DIR            # s3logs, DuckDB and zstd on it

Deterministic for a seed. About 30 s per GiB.
"""
import argparse
import base64
import datetime
import math
import os
import random

OPERATIONS = [  # operation, method, share
    ("REST.GET.OBJECT", "GET", 0.55), ("REST.HEAD.OBJECT", "HEAD", 0.15), ("REST.PUT.OBJECT", "PUT", 0.10),
    ("REST.GET.BUCKET", "GET", 0.08), ("REST.DELETE.OBJECT", "DELETE", 0.03), ("REST.POST.UPLOAD", "POST", 0.02),
    ("REST.GET.ACL", "GET", 0.02), ("REST.COPY.OBJECT", "PUT", 0.02), ("BATCH.DELETE.OBJECT", "POST", 0.01),
    ("REST.GET.BUCKETPOLICY", "GET", 0.01), ("REST.OPTIONS.PREFLIGHT", "OPTIONS", 0.01),
]
USER_AGENTS = [
    "aws-sdk-java/1.12.%d Linux/5.10.%d-%d.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/25.%d-b%d java/1.8.0_%d "
    "vendor/Oracle_Corporation cfg/retry-mode/standard",
    "Boto3/1.34.%d md/Botocore#1.34.%d ua/2.0 os/linux#5.15.0-%d-generic md/arch#x86_64 lang/python#3.11.%d "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.%d",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12%d.0.%d.%d Safari/537.36",
    "aws-cli/2.15.%d Python/3.11.%d Linux/6.1.%d-%d.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
    "S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.%d Linux/5.10.%d OpenJDK_64-Bit_Server_VM/25.%d java/1.8.0_%d",
]
WORDS = ["images", "2024", "thumbnails", "reports", "raw", "parquet", "daily", "user-uploads", "video", "tmp",
         "export", "invoices"]
BUCKETS = ["prod-assets", "logs-archive-eu", "media.example.net", "data-lake-raw", "backups-2024"]
STATUSES = [200, 204, 206, 304, 403, 404, 500, 503]
STATUS_WEIGHTS = [70, 5, 4, 6, 5, 7, 1, 2]
ERRORS = {403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError", 503: "SlowDown"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--objects", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--truncated", type=float, default=0.002, help="share of lines cut short")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)

    def user_agent():
        template = rng.choice(USER_AGENTS)
        return template % tuple(rng.randint(0, 400) for _ in range(template.count("%d")))

    def key():
        folders = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        stem = rng.choice(["part", "file", "IMG", "data", "report final"])
        ext = rng.choice(["jpg", "json", "csv.gz", "parquet", "mp4", "txt"])
        return "/".join(folders + [f"{stem}-{rng.getrandbits(32):08x}.{ext}"])

    owner = "".join(rng.choice("0123456789abcdef") for _ in range(64))
    user_agents = [user_agent() for _ in range(300)]
    roles = [f"arn:aws:sts::{rng.randint(10**11, 10**12 - 1)}:assumed-role/"
             f"{rng.choice(['etl-job', 'web-app', 'AWSServiceRoleForBackup', 'lambda-exec'])}/i-{rng.getrandbits(68):017x}"
             for _ in range(400)]
    users = [f"arn:aws:iam::{rng.randint(10**11, 10**12 - 1)}:user/{rng.choice(['alice', 'bob', 'deploy-bot', 'ci'])}"
             for _ in range(30)]
    keys = [key() for _ in range(200_000)]
    ips = [".".join(str(x) for x in (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)))
           for _ in range(50_000)]
    ips += [f"2600:1f18:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}" for _ in range(5_000)]

    def line(when):
        r, acc = rng.random(), 0.0
        for op, method, share in OPERATIONS:
            acc += share
            if r < acc:
                break
        bucket = rng.choice(BUCKETS)
        k = "-" if op == "REST.GET.BUCKET" else rng.choice(keys).replace(" ", "%20")
        requester = rng.choice(roles) if rng.random() < 0.6 else (rng.choice(users) if rng.random() < 0.7 else "-")
        if op == "REST.GET.BUCKET":
            uri = f"GET /?list-type=2&prefix={rng.choice(WORDS)}%2F&max-keys=1000&encoding-type=url HTTP/1.1"
        elif rng.random() < 0.7:
            uri = f"{method} /{k} HTTP/1.1"
        else:
            uri = f"{method} /{bucket}/{k} HTTP/1.1"
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        size = rng.randint(100, 50_000_000) if method in ("GET", "PUT") else None
        sent = size if (status == 200 and method == "GET") else (rng.randint(200, 900) if status >= 400 else None)
        total = rng.randint(1, 4000)
        turnaround = rng.randint(1, total) if status < 400 else None
        referer = "-" if rng.random() < 0.8 else f'"https://www.example.com/{rng.choice(WORDS)}"'
        version = "-" if rng.random() < 0.9 else f"{rng.getrandbits(128):032x}"
        host_id = base64.b64encode(rng.randbytes(57)).decode()
        access_point = "-" if rng.random() < 0.95 else \
            f"arn:aws:s3:us-east-1:{rng.randint(10**11, 10**12 - 1)}:accesspoint/ap1"
        dash = lambda v: "-" if v is None else str(v)  # noqa: E731
        fields = [
            owner, bucket, when.strftime("[%d/%b/%Y:%H:%M:%S +0000]"), rng.choice(ips), requester,
            "".join(rng.choice("0123456789ABCDEF") for _ in range(16)), op, k, f'"{uri}"', str(status),
            ERRORS.get(status, "-"), dash(sent), dash(size), str(total), dash(turnaround), referer,
            f'"{rng.choice(user_agents)}"', version, host_id, rng.choice(["SigV4", "SigV4", "SigV2", "-"]),
            rng.choice(["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256", "-"]),
            rng.choice(["AuthHeader", "QueryString", "-"]), f"{bucket}.s3.us-east-1.amazonaws.com",
            rng.choice(["TLSv1.2", "TLSv1.3", "-"]), access_point, rng.choice(["Yes", "-"]), "-",
        ]
        text = " ".join(fields)
        if rng.random() < a.truncated:
            text = text[: rng.randint(1, len(text) // 3)].rstrip(" ")
        return text

    sigma = 1.2
    mu = math.log(a.bytes / a.objects) - sigma**2 / 2
    sizes = [rng.lognormvariate(mu, sigma) for _ in range(a.objects)]
    scale = a.bytes / sum(sizes)
    t = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    for size in (max(2000, int(s * scale)) for s in sizes):
        t += datetime.timedelta(seconds=rng.randint(30, 200))
        lines, n = [], 0
        while n < size:
            lines.append(line(t - datetime.timedelta(seconds=rng.randint(0, 3600))))
            n += len(lines[-1]) + 1
        name = t.strftime("%Y-%m-%d-%H-%M-%S-") + f"{rng.getrandbits(64):016X}"
        with open(os.path.join(a.out, name), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
