//! The pod conditions the kubelet owns (pkg/kubelet/status/generate.go).
