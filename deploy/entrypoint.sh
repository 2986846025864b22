#!/bin/sh
# The container's command line: `python -m <service> <command> [args...]`.
# SERVICE comes from the image (the SERVICE build argument); the command defaults
# to `api` (Dockerfile CMD) and is `worker` or `migrate` for the other containers.
set -eu
: "${SERVICE:?SERVICE is not set: build the image with --build-arg SERVICE=points|segmentation|feedback|webhooks|gateway}"
if [ "$#" -eq 0 ]; then
    set -- api
fi
exec python -m "$SERVICE" "$@"
