//! Thin wrappers over the kernel: namespaces, cgroups, capabilities, mounts, CNI exec.
//! One file per concern; each syscall sits behind a small function so the
//! logic above it can be unit-tested without root.

pub mod cgroup;
pub mod cgroup_files;
pub mod cgroup_support;
pub mod cni;
pub mod idmap;
pub mod init;
pub mod mount;
pub mod netdev;
pub mod ns;
pub mod process;
pub mod sysctl;
