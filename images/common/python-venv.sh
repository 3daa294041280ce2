#!/bin/sh
# Builder-stage helper shared by the Python images (proxy, scanner, sink):
# /opt/venv with exactly one dependency group exported from uv.lock by the kit
# (.build/requirements/, see kit/pyreqs.py), copied to /tmp/build/ beside the
# extra CA bundle (.build/ca/extra-ca.pem, empty when there is none).
#
#   python-venv.sh GROUP
#
# Runs in builder stages only: the extra CA never reaches a final image.
set -eu
group=$1
build=/tmp/build

# pip replaces its trust store with PIP_CERT: give it the system CAs too.
cat /etc/ssl/certs/ca-certificates.crt "$build/extra-ca.pem" >"$build/ca.pem"
export PIP_CERT="$build/ca.pem" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m venv /opt/venv
# --no-deps: the export is the whole closure, pinned and hashed; pip must not
# resolve anything beyond it (llm-guard's declared requirements, for one).
# --only-binary: nothing is compiled in an image build.
/opt/venv/bin/pip install --no-deps --require-hashes --only-binary :all: -r "$build/$group.txt"
# Packages whose metadata pyproject.toml overrides for uv: pip must not enforce
# their own Requires-Python (see kit/pyreqs.py).
if [ -s "$build/$group-overridden.txt" ]; then
    /opt/venv/bin/pip install --no-deps --require-hashes --only-binary :all: --ignore-requires-python \
        -r "$build/$group-overridden.txt"
fi
# The final image needs no installer.
/opt/venv/bin/pip uninstall --yes pip
