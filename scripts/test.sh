#!/usr/bin/env bash
# The test command README.md names: installs what the tests need when the machine lacks it
# (moto's S3 server and boto3, into a virtualenv of this checkout, .venv/), then runs every test.
# Arguments go to `cargo test` (for example a test name, or --locked).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import moto.server, boto3" 2>/dev/null; then
  if ! .venv/bin/python3 -c "import moto.server, boto3" 2>/dev/null; then
    echo "scripts/test.sh: installing moto[server] into .venv/ (the S3 tests run against it)" >&2
    python3 -m venv .venv
    .venv/bin/python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  fi
  # The tests start `python3 -m moto.server` and run boto3 scripts with `python3`.
  export PATH="$PWD/.venv/bin:$PATH"
fi
# Two tests per core: most of the S3 tests wait on moto's one Python thread or on child processes,
# and the suite runs in 95 s instead of 112 s on 2 cores (docs/performance.md, set-up).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(( $(nproc) * 2 ))}"
exec cargo test --workspace "$@"
