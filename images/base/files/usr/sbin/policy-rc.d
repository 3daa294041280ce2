#!/bin/sh
# No init system runs in a container: tell package scripts not to start services.
exit 101
