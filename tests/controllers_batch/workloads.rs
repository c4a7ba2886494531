//! DaemonSet and StatefulSet scenarios (added with those controllers).
