//! End-to-end tests with real clients (podman, containerd ctr) driving berth-runtime.
