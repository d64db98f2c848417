#!/usr/bin/env bash
# Submits a backfill as one AWS Batch array job of N children, each converting shard
# AWS_BATCH_JOB_ARRAY_INDEX of N (s3logs --shard-from-env). The job definition's retry strategy
# retries exits 73 and 75 (and SIGTERM stops, 143, and lost Spot hosts) and fails on the others.
#
#   deploy/aws-batch/submit-backfill.sh QUEUE N SOURCE DEST SINCE UNTIL
#   deploy/aws-batch/submit-backfill.sh backfill 8 s3://my-logging-bucket/access-logs/ \
#       s3://analytics/s3logs/ 2021-01-01 2025-12-31
#
# Register the definition once: aws batch register-job-definition \
#   --cli-input-json file://deploy/aws-batch/job-definition.json
set -euo pipefail
if [ $# -ne 6 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
queue=$1 n=$2 source=$3 dest=$4 since=$5 until=$6
if [ "$n" -lt 2 ]; then
    echo "an array job has at least 2 children; run one job with --shard 0/1 instead" >&2
    exit 2
fi
overrides=$(python3 - "$n" "$source" "$dest" "$since" "$until" <<'PY'
import json, sys
n, source, dest, since, until = sys.argv[1:]
print(json.dumps({
    "environment": [{"name": "S3LOGS_SHARDS", "value": n}],
    "command": ["convert", source, "--since", since, "--until", until, "--output", dest,
                "--shard-from-env", "--lease-wait", "60", "--log-format", "json"],
}))
PY
)
aws batch submit-job \
    --job-name "s3logs-backfill-$since-$until" \
    --job-queue "$queue" \
    --job-definition s3logs \
    --array-properties "size=$n" \
    --container-overrides "$overrides"
