//! Sandbox and container security contexts (kuberuntime/security_context.go).
