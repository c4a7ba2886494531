//! The pod phase (kubelet_pods.go getPhase).
