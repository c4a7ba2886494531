//! Thin wrappers over the kernel: namespaces, cgroups, capabilities, mounts, CNI exec.
