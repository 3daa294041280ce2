# Proxy settings for every client in the agent, derived from one variable.
#
# Sourced (POSIX sh) by the entrypoint, by login shells (/etc/profile.d), by
# interactive bash (/etc/bash.bashrc), by non-interactive bash ($BASH_ENV) and
# by `yolo-cage-env CMD`. `docker exec` does not inherit the entrypoint's
# environment, so every way into the container has to read it here.
#
# YOLO_CAGE_PROXY_URL is http://<agent>:<token>@<proxy>:8080 (the proxy
# identifies agents by that credential). The CA variables are set in the
# image itself (they are fixed paths); see images/agent/README.md.
if [ -n "${YOLO_CAGE_PROXY_URL:-}" ]; then
    # Both cases: curl reads only lower-case http_proxy, others upper case.
    export HTTP_PROXY="$YOLO_CAGE_PROXY_URL" http_proxy="$YOLO_CAGE_PROXY_URL"
    export HTTPS_PROXY="$YOLO_CAGE_PROXY_URL" https_proxy="$YOLO_CAGE_PROXY_URL"
    # Everything else curl (and httpx's all://) would try goes to the proxy too.
    export ALL_PROXY="$YOLO_CAGE_PROXY_URL" all_proxy="$YOLO_CAGE_PROXY_URL"
    # npm reads its own config keys before the environment.
    export NPM_CONFIG_PROXY="$YOLO_CAGE_PROXY_URL" NPM_CONFIG_HTTPS_PROXY="$YOLO_CAGE_PROXY_URL"
    # Node's http, https and fetch ignore *_PROXY unless asked (Node >= 22.21).
    export NODE_USE_ENV_PROXY=1
fi
# Only loopback bypasses the proxy; anything else has no route anyway.
export NO_PROXY="localhost,127.0.0.1,::1" no_proxy="localhost,127.0.0.1,::1"
