# Login shells (tmux windows, `bash -l`): the cage's proxy settings.
. /usr/local/lib/yolo-cage/env.sh
