#!/usr/bin/env bash
# Builds the container images drover's examples and tests use, without any registry:
#   drover/busybox:1         a busybox root filesystem from Debian's busybox-static
#   drover/python:3          a minimal Debian (debootstrap) with python3
#   drover/python-mlflow:3   drover/python:3 with the mlflow client (mlflow-skinny, from PyPI)
# Idempotent: an image that already exists is left alone. Pass --force to rebuild.
# Needs root (debootstrap), a running Docker engine, and Debian's package mirrors.
set -euo pipefail

force=0
[[ "${1:-}" == "--force" ]] && force=1
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[images] %s\n' "$*" >&2; }

have_image() { [[ $force -eq 0 ]] && docker image inspect "$1" >/dev/null 2>&1; }

need_tool() {
    local tool=$1 package=$2
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "installing $package"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_busybox() {
    local image=drover/busybox:1
    if have_image "$image"; then log "$image present"; return; fi
    log "building $image from Debian's busybox-static"
    (cd "$work" && apt-get download busybox-static >/dev/null 2>&1) || {
        apt-get update -qq
        (cd "$work" && apt-get download busybox-static >/dev/null)
    }
    local root="$work/busybox-root"
    mkdir -p "$root"/{bin,tmp,etc,root,proc,sys,dev}
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox-pkg"
    cp "$work/busybox-pkg/bin/busybox" "$root/bin/busybox"
    local applet
    for applet in $("$root/bin/busybox" --list); do
        [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    chmod 1777 "$root/tmp"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
    log "$image built"
}

build_python() {
    local image=drover/python:3
    if have_image "$image"; then log "$image present"; return; fi
    need_tool debootstrap debootstrap
    log "building $image: debootstrap $suite with python3 (a few minutes)"
    local root="$work/python-root"
    debootstrap --variant=minbase --include=python3 "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }
    # MLflow projects say `python`; Debian installs only `python3`.
    ln -sf python3 "$root/usr/bin/python"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'ENV PYTHONUNBUFFERED=1' \
        --change 'CMD ["python3"]' - "$image" >/dev/null
    log "$image built"
}

build_python_mlflow() {
    local image=drover/python-mlflow:3 client=mlflow-skinny==3.17.2
    if have_image "$image"; then log "$image present"; return; fi
    log "building $image: $client into drover/python:3"
    # The image's python is Debian's 3.11; wheels for it come through this machine's pip.
    python3 -m pip install --quiet --disable-pip-version-check --target "$work/site" \
        --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
        --implementation cp "$client" 2>"$work/pip.log" || {
        tail -n 30 "$work/pip.log" >&2
        exit 1
    }
    local container
    container=$(docker create drover/python:3 true)
    docker cp "$work/site/." "$container:/usr/local/lib/python3.11/dist-packages/" >/dev/null
    docker commit --change 'ENV MLFLOW_DISABLE_TELEMETRY=true' "$container" "$image" >/dev/null
    docker rm "$container" >/dev/null
    log "$image built"
}

if ! docker info >/dev/null 2>&1; then
    log "the Docker engine is not reachable; start it and run this script again"
    exit 1
fi
build_busybox
build_python
build_python_mlflow
